"""The operator for real: `society operator` as its own process, with the chart's ServiceAccount
token, against the real Job and Deployment controllers, scheduler and garbage collector; the
scripted kubelet plays the trainer."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import kubernetes
import yaml

from ..conftest import ROOT
from .conftest import Operator
from .kubelet import accuracy

TINY = ROOT / "examples" / "tiny.yaml"
SOCIETY_LABEL = "society.dev/society"
ITERATION_LABEL = "society.dev/iteration"


class Children:
    """Every Job, Deployment and Service of a Society seen while polling, by uid: a child made
    twice (deleted and created again) shows up as two uids under one (kind, name, iteration)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, society: str) -> None:
        self.batch = kubernetes.client.BatchV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace, self.selector = namespace, f"{SOCIETY_LABEL}={society}"
        self.uids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.nodes: dict[str, str] = {}  # pod -> node

    def poll(self) -> None:
        listed = {
            "Job": self.batch.list_namespaced_job(self.namespace, label_selector=self.selector),
            "Deployment": self.apps.list_namespaced_deployment(
                self.namespace, label_selector=self.selector
            ),
            "Service": self.core.list_namespaced_service(
                self.namespace, label_selector=self.selector
            ),
        }
        for kind, objects in listed.items():
            for obj in objects.items:
                iteration = (obj.metadata.labels or {}).get(ITERATION_LABEL, "")
                self.uids[(kind, obj.metadata.name, iteration)].add(obj.metadata.uid)
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        for pod in pods.items:
            if pod.spec.node_name:
                self.nodes[pod.metadata.name] = pod.spec.node_name

    def remaining(self) -> list[str]:
        self.uids.clear()
        self.poll()
        return [f"{kind}/{name}" for kind, name, _ in self.uids]


def get_society(api, namespace: str, name: str) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        "society.dev", "v1alpha1", namespace, "societies", name
    )


def run_to_end(api, namespace: str, name: str, children: Children, timeout: float = 120):
    """Poll the Society (and its children) until it Succeeded or Failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.poll()
        status = get_society(api, namespace, name).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"{name} did not finish within {timeout:.0f}s; status: {status}")


def test_tiny_example_runs_to_succeeded_and_is_collected(
    api, kubectl, namespace, kubelet, operator
):
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"]["namespace"] = namespace
    kubectl.apply(manifest)
    children = Children(api, namespace, "tiny")

    status = run_to_end(api, namespace, "tiny", children)

    assert status["phase"] == "Succeeded", status
    iterations = status["iterations"]
    assert [entry["iteration"] for entry in iterations] == [0, 1, 2]
    for entry in iterations:
        assert entry["accuracy"] == accuracy(entry["iteration"])
        assert entry["evalQuestions"] == 128
    # The train splits' datasets: three agents, generation only (one round: no critic data).
    datasets = iterations[0]["datasets"]
    assert sorted((d["agent"], d["role"]) for d in datasets) == [
        (0, "generation"),
        (1, "generation"),
        (2, "generation"),
    ]
    assert status["accuracy"] == accuracy(2)

    # Each child was created once: no (kind, name, iteration) ever had two uids.
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, twice
    jobs = [job for job in kubelet.jobs_finished()]
    assert len(jobs) == len(set(jobs)), f"a Job ran more than one pod: {jobs}"
    assert "tiny-debate-it0" in jobs and "tiny-debate-it2" in jobs
    assert sum(job.startswith("tiny-train-") for job in jobs) == 2 * 3  # 3 agents x 2 iterations
    # gpus: 0, no nodeSelector: every pod on the CPU pool (GPU nodes are tainted).
    assert children.nodes and all(node.startswith("cpu-") for node in children.nodes.values())

    kubectl.run("delete", "soc", "tiny", "-n", namespace, "--timeout=60s")
    kubectl.run(
        *("wait", "--for=delete", "jobs,deployments,services", "-l", f"{SOCIETY_LABEL}=tiny"),
        *("-n", namespace, "--timeout=60s"),
        check=False,
    )
    deadline = time.monotonic() + 60
    while (left := children.remaining()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"not garbage-collected: {left}"
    # whenDeleted: Retain (the default): the claim the operator made stays, with no owner.
    claim = kubernetes.client.CoreV1Api(api).read_namespaced_persistent_volume_claim(
        "tiny-artifacts", namespace
    )
    assert not claim.metadata.owner_references and claim.status.phase == "Bound"


def test_a_job_failing_past_backoff_limit_fails_the_society_with_its_error(
    api, kubectl, namespace, kubelet, operator
):
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["backoffLimit"] = 1
    kubelet.fail("tiny-debate-it0", "CUDA out of memory while loading the model", exit_code=3)
    kubectl.apply(manifest)

    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))

    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"
    assert "tiny-debate-it0" in failed["message"]
    assert "CUDA out of memory while loading the model" in failed["message"]
    # The real Job controller retried once (backoffLimit 1): two pods ran, both failed.
    assert kubelet.jobs_finished() == ["tiny-debate-it0", "tiny-debate-it0"]
    job = kubernetes.client.BatchV1Api(api).read_namespaced_job("tiny-debate-it0", namespace)
    assert job.status.failed == 2


def test_an_operator_watching_named_namespaces_starts_at_once(
    api, kubectl, namespace, operator_kubeconfig, tmp_path
):
    """The chart's watchNamespaces mode runs `society operator --namespace=...` with Roles in
    those namespaces and no permission to list namespaces. kopf's namespace scanning would
    retry GET /api/v1/namespaces (403) for about a minute before it watched anything."""
    running = Operator(operator_kubeconfig, tmp_path / "operator.log", "--namespace", namespace)
    running.start()
    try:
        manifest = yaml.safe_load(TINY.read_text())
        manifest["metadata"]["namespace"] = namespace
        kubectl.apply(manifest)
        deadline = time.monotonic() + 10
        created = None
        while time.monotonic() < deadline and not created:
            created = kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace).items
            time.sleep(0.5)
        forbidden = 'cannot list resource "namespaces"' in running.output()
        assert created and not forbidden, "no debate Job 10 s after the Society was created" + (
            ": kopf is retrying to list namespaces (forbidden)" if forbidden else ""
        )
    finally:
        running.stop()
