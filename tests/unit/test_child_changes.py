"""A child's event wakes its Society only when it changed what a reconcile reads (kube/changes.py),
and the woken loop reads the new projection: driven through kopf's own handling of an event
(`process_resource_event`, kopf's internals, 1.45), since what is checked is how the operator's
handlers and kopf fit together: an upgrade of kopf that changes it fails here."""

from __future__ import annotations

import asyncio
import copy

import kopf
from kopf._cogs.structs import references
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from society_operator.kube.handlers import register

LABELS = {"society.dev/society": "s"}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "s-debate-it0-abcde",
        "namespace": "research",
        "uid": "pod-1",
        "labels": {**LABELS, "batch.kubernetes.io/job-name": "s-debate-it0"},
        "resourceVersion": "1",
    },
    "spec": {"containers": [{"name": "debate"}]},
    "status": {"phase": "Pending"},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "s-vllm", "namespace": "research", "uid": "dep-1", "labels": LABELS},
    "spec": {"replicas": 1},
}
PODS = references.Resource("", "v1", "pods", kind="Pod", namespaced=True)
DEPLOYMENTS = references.Resource("apps", "v1", "deployments", kind="Deployment", namespaced=True)


class Society:
    """A Society's loop as controller.py runs it: woken through an asyncio.Event, it reads its
    pods from the index when it next runs."""

    def __init__(self, indices) -> None:
        self.indices, self.wakes, self.read = indices, asyncio.Event(), []

    def wake(self, namespace: str, name: str) -> None:
        assert (namespace, name) == ("research", "s")
        self.wakes.set()

    async def run(self) -> None:
        while True:
            await self.wakes.wait()
            self.wakes.clear()
            pods = self.indices["society_pods"].get(("research", "s"), ())
            self.read.append([pod["status"]["phase"] for pod in pods])


Event = tuple[references.Resource, str | None, dict]


def run_events(events: list[Event]) -> tuple[list[bool], list[list[str]]]:
    """Each event through kopf as the operator registers its handlers: whether each woke the
    Society, and what its loop read each time it was woken (its pods' phases)."""
    registry = kopf.OperatorRegistry()
    register(registry)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    society = Society(indexers.indices)
    woke = []

    async def scenario() -> None:
        loop = asyncio.create_task(society.run())
        memories, memo = inventory.ResourceMemories(), kopf.Memo(controller=society)
        for resource, kind, body in events:
            await processing.process_resource_event(
                lifecycle=kopf.lifecycles.all_at_once,
                indexers=indexers,
                registry=registry,
                settings=kopf.OperatorSettings(),
                memories=memories,
                memobase=memo,
                resource=resource,
                raw_event={"type": kind, "object": copy.deepcopy(body)},
                event_queue=asyncio.Queue(),
            )
            reads = len(society.read)
            await asyncio.sleep(0.01)  # the loop, if woken, reads
            woke.append(len(society.read) > reads)
        loop.cancel()

    asyncio.run(scenario())
    return woke, society.read


def test_only_events_that_change_what_observe_reads_wake_the_society():
    pod = copy.deepcopy(POD)
    bound = copy.deepcopy(pod)
    bound["spec"]["nodeName"] = "gpu-1"  # by the scheduler: nothing observe reads
    bound["metadata"]["annotations"] = {"a": "b"}
    ended = copy.deepcopy(bound)
    ended["status"]["containerStatuses"] = [
        {"state": {"terminated": {"finishedAt": "2026-12-03T12:00:00Z", "message": "{}"}}}
    ]
    events, wakes = zip(
        *[
            ((PODS, None, pod), True),  # first seen (a listing)
            ((PODS, "MODIFIED", bound), False),
            ((PODS, "MODIFIED", ended), True),  # the step's result
            ((PODS, "MODIFIED", ended), False),  # the same again (a re-listed watch)
            ((PODS, "DELETED", ended), False),  # its owner's events wake (handlers.py)
            ((PODS, "ADDED", pod), True),  # made anew (the same uid here)
            ((DEPLOYMENTS, "ADDED", DEPLOYMENT), True),
            ((DEPLOYMENTS, "MODIFIED", DEPLOYMENT), False),
            ((DEPLOYMENTS, "DELETED", DEPLOYMENT), True),  # a server gone: the next is made
            ((DEPLOYMENTS, "ADDED", DEPLOYMENT), True),
        ],
        strict=True,
    )
    assert run_events(list(events))[0] == list(wakes)


def test_a_woken_society_reads_the_event_that_woke_it():
    """The index function wakes the Society before kopf has put its projection into the index:
    this holds only because kopf does that with no await in between."""
    events = []
    for phase in ("Pending", "Running", "Succeeded"):
        pod = copy.deepcopy(POD)
        pod["status"]["phase"] = phase
        events.append((PODS, "MODIFIED", pod))
    assert run_events(events) == ([True] * 3, [["Pending"], ["Running"], ["Succeeded"]])
