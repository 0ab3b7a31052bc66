"""examples/gsm8k-full-a100.yaml through the real Kueue (../shared/k8s: its CRDs, its webhooks on
loopback) with the ResourceFlavor, ClusterQueue and LocalQueue that docs/install.md documents:
every Job suspended at creation, admitted by Kueue within the queue's quota (the CPU-only debate
to the CPU flavor), placed on the flavor's nodes, and the Society Succeeded; suspended
mid-training, its Jobs stop and stay stopped without a fight over Job.spec.suspend, and resumed,
it finishes. Only this module starts Kueue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from ..conftest import ROOT
from .addons import Kueue
from .assets import unpack
from .conftest import ASSETS
from .controlplane import wait_for
from .test_lifecycle import created_once
from .test_operator import Children, get_society, run_to_end

GSM8K_A100 = ROOT / "examples" / "gsm8k-full-a100.yaml"
INSTALL = ROOT / "docs" / "install.md"
NAME = "mistral-gsm8k"
A100 = "nvidia-tesla-a100"


@pytest.fixture(scope="module")
def kueue(control_plane, kubectl, tmp_path_factory) -> Iterator[Kueue]:
    assert isinstance(ASSETS, Path)
    with Kueue(
        unpack(ASSETS, ("kueue",)),
        ASSETS / "kueue" / "kueue-v0.17.0-config.tar.xz",
        tmp_path_factory.mktemp("kueue"),
        kubectl,
    ) as running:
        yield running
        print(running.log())


def install_queues(namespace: str) -> list[dict[str, Any]]:
    """The Kueue objects of docs/install.md section 5, the LocalQueue in `namespace`."""
    text = INSTALL.read_text().split("## 5. Kueue")[1].split("```yaml")[1].split("```")[0]
    documents = [d for d in yaml.safe_load_all(text) if d]
    kinds = ["ResourceFlavor", "ResourceFlavor", "ClusterQueue", "LocalQueue"]
    assert [d["kind"] for d in documents] == kinds
    documents[3]["metadata"]["namespace"] = namespace
    return documents


def gsm8k_society(namespace: str) -> dict[str, Any]:
    """The example in `namespace`, one iteration, small splits."""
    manifest = yaml.safe_load(GSM8K_A100.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["task"] |= {"trainSize": 32, "evalSize": 32}
    manifest["spec"]["finetune"]["iterations"] = 1
    return manifest


def prerequisites(kubectl, namespace: str) -> None:
    """What the example names and docs/install.md has the reader create."""
    kubectl.apply(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "research-batch"},
            "value": 1000,
        }
    )
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "society-artifacts", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "100Gi"}},
            },
        }
    )
    kubectl.run(
        *("create", "secret", "generic", "hf-token", "-n", namespace),
        "--from-literal=token=hf_test",
    )


def test_gsm8k_example_through_kueue_on_the_a100_pool(
    api, kubectl, namespace, kubelet, operator, kueue
):
    for document in install_queues(namespace):
        kubectl.apply(document)
    prerequisites(kubectl, namespace)
    kubectl.apply(gsm8k_society(namespace))
    children = Children(api, namespace, NAME)

    try:
        status = run_to_end(api, namespace, NAME, children, timeout=120)
    except AssertionError:
        print(kubectl.run("get", "workloads,jobs,pods", "-n", namespace, "-o", "wide").stdout)
        print(kubectl.run("describe", "workloads,pods", "-n", namespace, check=False).stdout)
        raise

    assert status["phase"] == "Succeeded", status
    created_once(children, kubelet)
    batch = kubernetes.client.BatchV1Api(api)
    jobs = batch.list_namespaced_job(namespace, label_selector=f"society.dev/society={NAME}")
    assert len(jobs.items) == 2 + 6  # two debates, 3 agents x 2 roles of training
    for job in jobs.items:
        assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "a100-queue"
        assert job.status.succeeded == 1, job.metadata.name
    # Every Job went through a Workload that Kueue admitted: GPU Jobs to the a100 flavor.
    workloads = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta2", namespace, "workloads"
    )["items"]
    owners = {
        w["metadata"]["ownerReferences"][0]["name"]: w
        for w in workloads
        if w["metadata"]["ownerReferences"][0]["kind"] == "Job"
    }
    assert sorted(owners) == sorted(j.metadata.name for j in jobs.items)
    for job, workload in owners.items():
        admission = workload["status"]["admission"]
        assert admission["clusterQueue"] == "gpu", job
        flavors = {f for ps in admission["podSetAssignments"] for f in ps["flavors"].values()}
        assert flavors == ({"default-cpu"} if "-debate-" in job else {"a100"}), (job, flavors)
    # Servers and training Jobs on the A100 pool; debates off the GPU pools.
    nodes = {
        n.metadata.name: n.metadata.labels
        for n in kubernetes.client.CoreV1Api(api).list_node().items
    }
    wrong = {
        pod: node
        for pod, node in children.nodes.items()
        if nodes[node].get("cloud.google.com/gke-accelerator")
        != (None if "-debate-" in pod else A100)
    }
    assert not wrong, f"pods on the wrong pool: {wrong}"


def _workloads(api, namespace: str) -> dict[str, dict[str, Any]]:
    """Kueue's Workloads in `namespace`, by the name of the Job that owns each."""
    listed = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta2", namespace, "workloads"
    )["items"]
    return {w["metadata"]["ownerReferences"][0]["name"]: w for w in listed}


def _admitted(workload: dict[str, Any]) -> bool:
    conditions = (workload.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Admitted" and c["status"] == "True" for c in conditions)


def _operator_patches(control_plane, namespace: str, resource: str) -> list[str]:
    """The names of the `resource` objects the operator patched in `namespace` (audit log)."""
    return [
        e["objectRef"]["name"]
        for e in control_plane.audit_events()
        if e.get("verb") == "patch"
        and e.get("stage") == "ResponseComplete"
        and (e.get("objectRef") or {}).get("resource") == resource
        and e["objectRef"].get("namespace") == namespace
    ]


def _wait_phase(api, namespace: str, phase: str, children: Children, timeout: float = 60) -> None:
    def reached() -> bool:
        children.poll()
        return (get_society(api, namespace, NAME).get("status") or {}).get("phase") == phase

    wait_for(reached, f"phase {phase}", timeout, every=0.2)


def _patch_suspend(kubectl, namespace: str, suspend: bool) -> None:
    kubectl.run(
        *("patch", "society", NAME, "-n", namespace, "--type", "merge"),
        *("-p", f'{{"spec":{{"suspend":{str(suspend).lower()}}}}}'),
    )


def test_suspend_with_a_queue_deactivates_the_workloads_and_does_not_fight_kueue(
    api, kubectl, control_plane, namespace, kubelet, operator, kueue
):
    """Kueue owns spec.suspend of the Jobs in a LocalQueue (it unsuspends every Job it admitted):
    the operator deactivates their Workloads instead, once each, and never patches the Jobs."""
    for document in install_queues(namespace):
        kubectl.apply(document)
    prerequisites(kubectl, namespace)
    debate, held = f"{NAME}-debate-it0", f"{NAME}-train-gen-0-it1"
    kubelet.hold(debate)
    kubelet.hold(held)
    kubectl.apply(gsm8k_society(namespace))
    children = Children(api, namespace, NAME)
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)

    def pods(job: str) -> list[Any]:
        selector = f"batch.kubernetes.io/job-name={job}"
        return core.list_namespaced_pod(namespace, label_selector=selector).items

    def running(job: str) -> bool:
        return any(p.status.phase == "Running" for p in pods(job))

    # The servers went through the queue too: each pod admitted, to the a100 flavor, before the
    # debate (which starts once they are ready).
    wait_for(lambda: children.poll() or running(debate), f"{debate} running", 90, 0.3)
    servers = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=inference"
    ).items
    assert len(servers) == 1 and all(  # iteration 0 serves the base model from one server
        p.metadata.labels["kueue.x-k8s.io/queue-name"] == "a100-queue" for p in servers
    )
    admitted = {
        name: workload["status"]["admission"]
        for name, workload in _workloads(api, namespace).items()
        if any(name == p.metadata.name for p in servers)
    }
    assert sorted(admitted) == sorted(p.metadata.name for p in servers), admitted
    for admission in admitted.values():
        assert admission["clusterQueue"] == "gpu"
        flavors = {f for ps in admission["podSetAssignments"] for f in ps["flavors"].values()}
        assert flavors == {"a100"}, admission
    kubelet.release(debate)

    _wait_phase(api, namespace, "Training", children, timeout=120)
    wait_for(lambda: children.poll() or running(held), f"{held} running", 60, 0.3)

    _patch_suspend(kubectl, namespace, True)
    _wait_phase(api, namespace, "Suspended", children)

    def deactivated() -> list[str]:
        stopped = [
            job
            for job, workload in _workloads(api, namespace).items()
            if job.startswith(f"{NAME}-train-")
            and not workload["spec"]["active"]
            and not _admitted(workload)
        ]
        return stopped if held in stopped else []

    stopped = wait_for(deactivated, f"the Workload of {held} deactivated and evicted", 30, 0.3)
    wait_for(lambda: not pods(held), f"the pod of {held} gone", 30, 0.3)
    # Stopped, and it stays so: a fight would see Kueue unsuspend the Job within a second.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert batch.read_namespaced_job(held, namespace).spec.suspend, "Kueue restarted it"
        assert not any(running(job) for job in stopped), "a Job of the suspended Society ran"
        time.sleep(0.3)
    assert _operator_patches(control_plane, namespace, "jobs") == []
    deactivated = _operator_patches(control_plane, namespace, "workloads")
    assert sorted(deactivated) == sorted(set(deactivated)), deactivated  # each once

    _patch_suspend(kubectl, namespace, False)
    wait_for(
        lambda: not batch.read_namespaced_job(held, namespace).spec.suspend,
        f"{held} admitted again by Kueue",
        60,
        0.3,
    )
    kubelet.release(held)
    status = run_to_end(api, namespace, NAME, children, timeout=120)

    assert status["phase"] == "Succeeded", status
    created_once(children, kubelet, stopped)
    assert _operator_patches(control_plane, namespace, "jobs") == []
    # Each Workload patched at most twice (deactivated, reactivated: one Kueue made anew after
    # the eviction is active already), and none left inactive.
    patched = _operator_patches(control_plane, namespace, "workloads")
    assert all(patched.count(name) <= 2 for name in patched), patched
    assert all(w["spec"]["active"] for w in _workloads(api, namespace).values())
    assert kubelet.jobs_finished().count(held) == 1  # the pod it had before was stopped
