"""Leader election: with a coordination.k8s.io Lease, of several replicas only one acts."""

from __future__ import annotations

import asyncio
import time

from society_operator.kube.client import Cluster
from society_operator.kube.leader import LeaseElector, LeaseTimings

from .apiserver import now
from .test_operator import NS, Society

FAST = LeaseTimings(duration=2.0, renew_deadline=1.0, retry_period=0.1)


def lease(kube, name: str = "society-operator") -> dict:
    return kube.get("Lease", NS, name)["spec"]


def test_one_candidate_leads_and_hands_over_when_it_stops(kube):
    changes: list[tuple[str, bool]] = []

    async def scenario() -> None:
        cluster = Cluster.from_environment()
        electors = [
            LeaseElector(
                cluster.coordination,
                name="society-operator",
                namespace=NS,
                identity=identity,
                timings=FAST,
                on_change=lambda leading, who=identity: changes.append((who, leading)),
            )
            for identity in ("a", "b")
        ]
        tasks = [asyncio.create_task(electors[0].run())]
        await asyncio.sleep(0.5)
        tasks.append(asyncio.create_task(electors[1].run()))
        await asyncio.sleep(0.5)
        assert [e.leading for e in electors] == [True, False]
        tasks[0].cancel()  # a, stopping, hands the Lease back: b takes it at its next try
        await asyncio.gather(tasks[0], return_exceptions=True)
        started = time.monotonic()
        while not electors[1].leading:
            await asyncio.sleep(0.05)
        assert time.monotonic() - started < 1.0  # not the 2 s a silent leader would cost
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        cluster.close()

    asyncio.run(scenario())
    assert changes == [("a", True), ("a", False), ("b", True), ("b", False)]
    assert lease(kube)["leaseTransitions"] == 1


def test_a_follower_acts_only_once_the_leaders_lease_expires(kube, start_operator):
    held = {"holderIdentity": "the-other-replica", "leaseDurationSeconds": 2}
    held |= {"acquireTime": now(), "renewTime": now(), "leaseTransitions": 0}
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "society-operator", "namespace": NS},
            "spec": held,
        }
    )
    start_operator(
        leader_election=True, lease_namespace=NS, identity="this-replica", lease_timings=FAST
    )
    society = Society(kube, "phi3").create()
    time.sleep(1.0)  # the other replica's Lease is still fresh: this one writes nothing
    assert society.status() == {} and society.names("Deployment") == []
    # The other replica is gone (its Lease is not renewed): this one takes over and acts.
    society.wait_phase("Serving", timeout=5)
    assert lease(kube)["holderIdentity"] == "this-replica"
    assert lease(kube)["leaseTransitions"] == 1
