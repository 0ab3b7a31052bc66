"""A Society's whole life on the real control plane, with `society operator` as its own process
(the chart ServiceAccount's token): the H100 LoRA example to Succeeded with every pod on its pool;
suspend and resume mid-debate and mid-training; the operator SIGKILLed and restarted in each
phase; two replicas with leader election, the leader killed; `whenDeleted: Delete` collecting
every child, the claim included (after the suspended run). The scripted kubelet plays the trainer.

"Nothing created twice" is read from the apiserver: every child seen while polling, by uid
(`Children`), and each Job ran one pod per attempt (`kubelet.jobs_finished()`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Collection
from typing import Any

import kubernetes
import pytest
import yaml

from society_operator.kube.client import Cluster
from society_operator.kube.leader import LeaseElector, LeaseTimings

from ..conftest import ROOT
from .conftest import OPERATOR_NAMESPACE, Operator
from .controlplane import wait_for
from .test_operator import Children, get_society, healthy, run_to_end

LORA_H100 = ROOT / "examples" / "arithmetic-lora-h100.yaml"
NAME = "phi3-arithmetic"
H100 = "nvidia-h100-80gb"
LEASE = "society-operator"  # the chart's leaderElection.leaseName, the only one its RBAC allows


def lora_society(namespace: str, iterations: int = 1, **spec: Any) -> dict[str, Any]:
    """examples/arithmetic-lora-h100.yaml in `namespace`, with small splits and `iterations`."""
    manifest = yaml.safe_load(LORA_H100.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["task"] |= {"trainSize": 32, "evalSize": 32}
    manifest["spec"]["finetune"]["iterations"] = iterations
    # No class: the fixture has 200 such volumes and only 12 premium-rwx ones (that claims keep).
    manifest["spec"]["storage"] = {"size": "10Gi"}
    manifest["spec"] |= spec
    return manifest


def created_once(children: Children, kubelet, stopped: Collection[str] = ()) -> None:
    """Every child created once, and every Job ran one pod to its end; a Job in `stopped` (one
    suspended while it ran) may run a second: the Job controller deletes the running pod of a
    suspended Job, even one that was about to succeed, and starts a new one on resume."""
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, f"created more than once: {twice}"
    jobs = kubelet.jobs_finished()
    runs = {job: jobs.count(job) for job in jobs}
    assert all(n <= (2 if job in stopped else 1) for job, n in runs.items()), (
        f"a Job ran more pods than it should: {jobs}"
    )


def on_pool(api, namespace: str, children: Children, accelerator: str) -> None:
    """Every pod of the Society ran on a node of the `accelerator` pool, and asked for GPUs."""
    core = kubernetes.client.CoreV1Api(api)
    nodes = {n.metadata.name: n.metadata.labels for n in core.list_node().items}
    assert children.nodes, "no pod was ever scheduled"
    # The debate Job is a client of the servers: CPU only, no GPU pool (docs/install.md).
    wrong = {
        pod: node
        for pod, node in children.nodes.items()
        if nodes[node].get("cloud.google.com/gke-accelerator")
        != (None if "-debate-" in pod else accelerator)
    }
    assert not wrong, f"pods off the {accelerator} pool: {wrong}"


def gpu_requests(api, namespace: str, selector: str) -> dict[str, str]:
    """The nvidia.com/gpu request of every container of the Society's pod templates."""
    batch, apps = kubernetes.client.BatchV1Api(api), kubernetes.client.AppsV1Api(api)
    templates = [
        (j.metadata.name, j.spec.template)
        for j in batch.list_namespaced_job(namespace, label_selector=selector).items
    ] + [
        (d.metadata.name, d.spec.template)
        for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items
    ]
    return {
        name: (c.resources.requests or {}).get("nvidia.com/gpu")
        for name, template in templates
        for c in template.spec.containers
    }


def wait_phase(api, namespace: str, phase: str, children: Children, timeout: float = 60) -> None:
    def reached() -> bool:
        children.poll()
        return (get_society(api, namespace, NAME).get("status") or {}).get("phase") == phase

    wait_for(reached, f"phase {phase}", timeout, every=0.2)


def test_lora_h100_example_runs_to_succeeded_on_the_h100_pool(
    api, kubectl, namespace, kubelet, operator
):
    manifest = lora_society(namespace, iterations=2)
    manifest["spec"]["storage"] = yaml.safe_load(LORA_H100.read_text())["spec"]["storage"]
    kubectl.apply(manifest)
    children = Children(api, namespace, NAME)
    # The server is gone once the Society finishes: its GPU request is read while it runs.
    selector = f"society.dev/society={NAME}"
    server = wait_for(
        lambda: gpu_requests(api, namespace, selector).get(f"{NAME}-vllm"), "the server", 60, 0.2
    )
    status = run_to_end(api, namespace, NAME, children)

    assert status["phase"] == "Succeeded", status
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1, 2]
    # Two rounds: generation and critic data for each of the three agents.
    roles = sorted((d["agent"], d["role"]) for d in status["iterations"][0]["datasets"])
    assert roles == [(a, r) for a in range(3) for r in ("critic", "generation")]
    created_once(children, kubelet)
    jobs = kubelet.jobs_finished()
    assert sum(job.startswith(f"{NAME}-train-") for job in jobs) == 2 * 3 * 2
    # LoRA: one server (the adapters) with one H100; every pod on the H100 pool.
    # (A server per iteration: each serves that iteration's adapters.)
    servers = {(name, it) for kind, name, it in children.uids if kind == "Deployment"}
    assert servers == {(f"{NAME}-vllm", str(i)) for i in range(3)}, servers
    on_pool(api, namespace, children, H100)
    requests = gpu_requests(api, namespace, selector)
    assert server == "1"
    trained = [j for j in requests if "-train-" in j]
    assert len(trained) == 12 and all(requests[j] == "1" for j in trained), requests
    claim = kubernetes.client.CoreV1Api(api).read_namespaced_persistent_volume_claim(
        f"{NAME}-artifacts", namespace
    )
    assert claim.spec.storage_class_name == "premium-rwx" and claim.status.phase == "Bound"


def _replicas(api, namespace: str) -> list[int]:
    apps = kubernetes.client.AppsV1Api(api)
    deployments = apps.list_namespaced_deployment(
        namespace, label_selector=f"society.dev/society={NAME}"
    ).items
    return [d.spec.replicas for d in deployments]


def _job(api, namespace: str, name: str):
    return kubernetes.client.BatchV1Api(api).read_namespaced_job(name, namespace)


def _patch_suspend(kubectl, namespace: str, suspend: bool) -> None:
    kubectl.run(
        *("patch", "society", NAME, "-n", namespace, "--type", "merge"),
        *("-p", f'{{"spec":{{"suspend":{str(suspend).lower()}}}}}'),
    )


def _suspend_and_resume(api, kubectl, namespace, kubelet, children, job: str, servers: int):
    """With `job`'s pod held running: suspend, see everything stop, resume, let it finish.
    `servers`: how many server replicas run in this phase (none while training: the servers
    give their GPUs to the training Jobs)."""
    _patch_suspend(kubectl, namespace, True)
    wait_phase(api, namespace, "Suspended", children)
    wait_for(lambda: not any(_replicas(api, namespace)), "the servers at zero", 30, 0.2)
    wait_for(lambda: _job(api, namespace, job).spec.suspend, f"{job} suspended", 30, 0.2)
    core = kubernetes.client.CoreV1Api(api)
    wait_for(
        lambda: (
            not core.list_namespaced_pod(
                namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
            ).items
        ),
        f"the pod of {job} gone",
        30,
        0.2,
    )
    _patch_suspend(kubectl, namespace, False)
    wait_for(lambda: sum(_replicas(api, namespace)) == servers, "the servers back", 30, 0.2)
    wait_for(lambda: not _job(api, namespace, job).spec.suspend, f"{job} resumed", 30, 0.2)
    kubelet.release(job)


def test_suspend_and_resume_then_delete_collects_every_child_and_the_claim(
    api, kubectl, namespace, kubelet, operator
):
    """Suspended mid-debate and mid-training, resumed, Succeeded; then deleted with
    `whenDeleted: Delete`: the real garbage collector takes every child and the claim."""
    debate = f"{NAME}-debate-it0"
    # Every training Job held: one that the suspension catches between its pod's exit and
    # the Job controller's count would rightly run again, and each must run exactly once here.
    trainers = [f"{NAME}-train-{role}-{n}-it1" for role in ("gen", "critic") for n in range(3)]
    training = trainers[0]
    for job in (debate, *trainers):
        kubelet.hold(job)
    kubectl.apply(lora_society(namespace, storage={"size": "10Gi", "whenDeleted": "Delete"}))
    children = Children(api, namespace, NAME)

    wait_phase(api, namespace, "Debating", children)
    _suspend_and_resume(api, kubectl, namespace, kubelet, children, debate, 1)
    wait_phase(api, namespace, "Training", children)
    wait_for(lambda: children.poll() or _job(api, namespace, training), training, 30, 0.2)
    _suspend_and_resume(api, kubectl, namespace, kubelet, children, training, 0)
    for job in trainers:
        kubelet.release(job)
    status = run_to_end(api, namespace, NAME, children)

    assert status["phase"] == "Succeeded", status
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, f"created more than once: {twice}"
    # The held Jobs' pods stopped by the suspension never finished: one pod each finished.
    jobs = kubelet.jobs_finished()
    assert all(jobs.count(job) == 1 for job in (debate, *trainers)), jobs
    assert len(jobs) == len(set(jobs)), jobs
    on_pool(api, namespace, children, H100)

    core = kubernetes.client.CoreV1Api(api)
    claim = core.read_namespaced_persistent_volume_claim(f"{NAME}-artifacts", namespace)
    assert [o.kind for o in claim.metadata.owner_references or []] == ["Society"]
    kubectl.run("delete", "soc", NAME, "-n", namespace, "--timeout=60s")

    def left() -> list[str]:
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        return children.remaining() + [f"PersistentVolumeClaim/{c.metadata.name}" for c in claims]

    try:
        wait_for(lambda: not left(), "every child and the claim garbage-collected", 60, 0.5)
    except TimeoutError:
        pytest.fail(f"not garbage-collected: {left()}")


def _kill(running: Operator) -> None:
    assert running.process is not None
    running.process.signal(signal.SIGKILL)
    running.process.popen.wait(10)
    running.process = None


def test_operator_killed_in_each_phase_creates_nothing_twice(
    api, kubectl, namespace, kubelet, operator
):
    debate, training = f"{NAME}-debate-it0", f"{NAME}-train-critic-2-it1"
    kubelet.hold(debate)
    kubelet.hold(training)
    kubectl.apply(lora_society(namespace))
    children = Children(api, namespace, NAME)
    apps = kubernetes.client.AppsV1Api(api)

    # Serving: killed as soon as it has created the server.
    wait_for(
        lambda: apps.list_namespaced_deployment(namespace).items, "the server created", 60, 0.05
    )
    _kill(operator)
    children.poll()
    phases = [(get_society(api, namespace, NAME).get("status") or {}).get("phase")]
    operator.start()
    # Debating: the debate Job held running.
    wait_phase(api, namespace, "Debating", children)
    _kill(operator)
    phases.append(get_society(api, namespace, NAME)["status"]["phase"])
    operator.start()
    kubelet.release(debate)
    # Training: one training Job held running, the others finished.
    wait_phase(api, namespace, "Training", children)
    wait_for(lambda: children.poll() or _job(api, namespace, training), training, 30, 0.2)
    time.sleep(1)
    _kill(operator)
    phases.append(get_society(api, namespace, NAME)["status"]["phase"])
    operator.start()
    kubelet.release(training)
    status = run_to_end(api, namespace, NAME, children)

    assert phases[0] in (None, "Pending", "Serving") and phases[1:] == ["Debating", "Training"]
    assert status["phase"] == "Succeeded", status
    created_once(children, kubelet)

    # Killed after the end, restarted: it finds nothing to do, and does nothing.
    _kill(operator)
    before = get_society(api, namespace, NAME)
    seen = {key: set(uids) for key, uids in children.uids.items()}
    operator.start()
    wait_for(lambda: healthy(operator), "the restarted operator's /healthz", 60, 0.5)
    time.sleep(6)  # a resync period (5 s) and every watch's first list
    children.poll()
    assert (
        get_society(api, namespace, NAME)["metadata"]["resourceVersion"]
        == (before["metadata"]["resourceVersion"])
    ), "the status of a Succeeded Society changed after a restart"
    assert {key: set(uids) for key, uids in children.uids.items()} == seen
    assert not _replicas(api, namespace), "a server came back"


def test_two_replicas_with_leader_election_the_leader_killed(
    api, kubectl, namespace, kubelet, operator_kubeconfig, tmp_path, monkeypatch
):
    coordination = kubernetes.client.CoordinationV1Api(api)
    try:
        coordination.delete_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise
    replicas = {}
    for name in ("replica-a", "replica-b"):
        monkeypatch.setenv("POD_NAME", name)
        replicas[name] = Operator(
            operator_kubeconfig, tmp_path / f"{name}.log", "--leader-elect"
        ).start()
    monkeypatch.delenv("POD_NAME")
    try:
        training = f"{NAME}-train-gen-1-it1"
        kubelet.hold(training)
        kubectl.apply(lora_society(namespace))
        children = Children(api, namespace, NAME)

        def holder() -> str | None:
            try:
                return coordination.read_namespaced_lease(
                    LEASE, OPERATOR_NAMESPACE
                ).spec.holder_identity
            except kubernetes.client.ApiException:
                return None

        leader = wait_for(holder, "a leader", 30, 0.2)
        follower = next(name for name in replicas if name != leader)
        wait_phase(api, namespace, "Training", children)
        wait_for(lambda: children.poll() or _job(api, namespace, training), training, 30, 0.2)
        # Only the leader acted: the follower's log names no child it made.
        assert f"{NAME}-debate-it0" not in replicas[follower].output()
        assert "became the leader" not in replicas[follower].output()
        _kill(replicas[leader])
        kubelet.release(training)
        begin = time.monotonic()
        wait_for(lambda: holder() == follower, "the follower taking the Lease", 40, 0.2)
        took_over = time.monotonic() - begin
        status = run_to_end(api, namespace, NAME, children)

        assert status["phase"] == "Succeeded", status
        assert took_over < 30, f"took {took_over:.1f}s to take over (lease duration 15 s)"
        assert "became the leader" in replicas[follower].output()
        created_once(children, kubelet)
    finally:
        for running in replicas.values():
            running.stop()
        for name, running in replicas.items():
            print(f"--- {name}\n{running.output()[-5000:]}")


def test_one_candidate_leads_and_a_stopping_leader_hands_the_lease_over(
    control_plane, namespace, monkeypatch
):
    """Two LeaseElectors on a Lease of the real coordination API: one leads; stopping, it
    hands the Lease back, so the other leads at its next try, not after the Lease expires."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    fast = LeaseTimings(duration=4.0, renew_deadline=2.0, retry_period=0.2)
    changes: list[tuple[str, bool]] = []

    async def scenario() -> float:
        cluster = Cluster.from_environment()
        electors = [
            LeaseElector(
                cluster.rest,
                name="elected",
                namespace=namespace,
                identity=identity,
                timings=fast,
                on_change=lambda leading, who=identity: changes.append((who, leading)),
            )
            for identity in ("a", "b")
        ]
        tasks = [asyncio.create_task(electors[0].run())]
        while not electors[0].leading:
            await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(electors[1].run()))
        await asyncio.sleep(1.0)
        assert [e.leading for e in electors] == [True, False]
        tasks[0].cancel()  # a, stopping, hands the Lease back
        await asyncio.gather(tasks[0], return_exceptions=True)
        started = time.monotonic()
        while not electors[1].leading:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        cluster.close()
        return took

    took = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert took < 2.0, f"{took:.1f}s: as long as an expired Lease (4 s), not a handover"
    assert changes == [("a", True), ("a", False), ("b", True), ("b", False)]
    lease = kubernetes.client.CoordinationV1Api(control_plane.api).read_namespaced_lease(
        "elected", namespace
    )
    assert lease.spec.lease_transitions == 1
