"""The control plane itself: the node pools, volumes and pod lifecycles the other tests rely on.

Where the binaries are missing this module is the one that says so (one skipped line), and the
other cluster modules are not collected (conftest.py)."""

from __future__ import annotations

import time

import kubernetes
import pytest

from .conftest import ASSETS, NO_ASSETS
from .controlplane import ACCELERATOR, GPU, POOLS, VOLUMES
from .kubelet import EXIT_CODE, MESSAGE

if ASSETS is None:
    pytest.skip(NO_ASSETS, allow_module_level=True)


def test_node_pools_are_ready_with_gpus_labels_and_taints(api, control_plane):
    nodes = {n.metadata.name: n for n in kubernetes.client.CoreV1Api(api).list_node().items}
    for pool in POOLS:
        for name in pool.node_names():
            node = nodes[name]
            ready = {c.type: c.status for c in node.status.conditions}["Ready"]
            assert ready == "True", name
            assert node.status.allocatable.get(GPU) == pool.capacity.get(GPU)
            assert node.status.allocatable["pods"] == "500"
            if GPU in pool.capacity:
                assert node.metadata.labels[ACCELERATOR] in (
                    "nvidia-tesla-a100",
                    "nvidia-h100-80gb",
                )
                taints = [(t.key, t.value, t.effect) for t in node.spec.taints]
                assert taints == [(GPU, "present", "NoSchedule")]
            else:
                assert not node.spec.taints
    volumes = kubernetes.client.CoreV1Api(api).list_persistent_volume().items
    assert len(volumes) >= sum(VOLUMES.values())
    print(f"control plane started in {control_plane.started_in:.1f}s")


def _pod(name: str, **spec) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


def _wait_phase(core, namespace: str, name: str, phases: set[str], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in phases:
            return pod
        time.sleep(0.2)
    raise AssertionError(f"pod {name} is {pod.status.phase}, not {phases}")


def test_an_annotated_pod_ends_with_its_exit_code_and_message(api, namespace):
    """What the scripted kubelet relies on (stages.yaml): Running until annotated, then
    terminated with the annotation's exit code and message (JSON survives the template)."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _pod("exits", restartPolicy="Never"))
    running = _wait_phase(core, namespace, "exits", {"Running"})
    assert running.status.container_statuses[0].ready
    message = '{"error": "out of memory: \\"cuda:0\\"", "n": 1}'
    core.patch_namespaced_pod(
        "exits", namespace, {"metadata": {"annotations": {EXIT_CODE: "3", MESSAGE: message}}}
    )
    failed = _wait_phase(core, namespace, "exits", {"Failed", "Succeeded"})
    terminated = failed.status.container_statuses[0].state.terminated
    assert (failed.status.phase, terminated.exit_code) == ("Failed", 3)
    assert terminated.message == message


def test_gpu_pods_land_only_on_their_pool(api, namespace):
    core = kubernetes.client.CoreV1Api(api)
    gpu = {"limits": {GPU: "1"}}
    toleration = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    h100 = _pod("h100", nodeSelector={ACCELERATOR: "nvidia-h100-80gb"}, tolerations=toleration)
    h100["spec"]["containers"][0]["resources"] = gpu
    untolerated = _pod("untolerated", nodeSelector={ACCELERATOR: "nvidia-tesla-a100"})
    for pod in (h100, untolerated, _pod("plain")):
        core.create_namespaced_pod(namespace, pod)
    assert _wait_phase(core, namespace, "h100", {"Running"}).spec.node_name.startswith("h100-")
    assert _wait_phase(core, namespace, "plain", {"Running"}).spec.node_name.startswith("cpu-")
    pending = core.read_namespaced_pod("untolerated", namespace)
    assert pending.status.phase == "Pending" and not pending.spec.node_name
