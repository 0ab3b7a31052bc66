"""The operator for real: `society operator` as its own process, with the chart's ServiceAccount
token, against the real Job and Deployment controllers, scheduler and garbage collector; the
scripted kubelet plays the trainer."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter, defaultdict
from typing import Any

import kubernetes
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ROOT
from .conftest import Operator
from .controlplane import wait_for
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


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(http_get(url))
        for sample in family.samples
    }


def event_reasons(api, namespace: str, name: str) -> list[str]:
    """The reasons of the Society's Events, oldest first."""
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=Society,involvedObject.name={name}"
    )
    return [e.reason for e in sorted(events.items, key=lambda e: int(e.metadata.resource_version))]


# One Event per step (the phase changes to Training and to ServersStarting are said in the
# IterationEvaluated and IterationTrained Events that come with them).
ITERATION_EVENTS = ["Debating", "IterationEvaluated", "IterationTrained"]
LAST_EVALUATION_EVENTS = ["Debating", "IterationEvaluated", "Succeeded"]


def test_tiny_example_runs_to_succeeded_and_is_collected(
    api, kubectl, namespace, kubelet, operator
):
    """examples/tiny.yaml to Succeeded: results, conditions, Events, metrics and /healthz as
    the operator reports them; each child made once, on the CPU pool; SIGTERM ends the operator
    cleanly; deleting the Society collects its children and keeps the claim."""
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
    # The train splits' datasets: three agents, each a generation and a critic model (2 rounds).
    datasets = iterations[0]["datasets"]
    assert sorted((d["agent"], d["role"]) for d in datasets) == [
        (agent, role) for agent in range(3) for role in ("critic", "generation")
    ]
    assert status["accuracy"] == accuracy(2)

    # Each child was created once: no (kind, name, iteration) ever had two uids.
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, twice
    jobs = [job for job in kubelet.jobs_finished()]
    assert len(jobs) == len(set(jobs)), f"a Job ran more than one pod: {jobs}"
    assert "tiny-debate-it0" in jobs and "tiny-debate-it2" in jobs
    assert sum(job.startswith("tiny-train-") for job in jobs) == 12  # 2 iterations x 3 agents x 2
    # gpus: 0, no nodeSelector: every pod on the CPU pool (GPU nodes are tainted).
    assert children.nodes and all(node.startswith("cpu-") for node in children.nodes.values())
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Progressing"]["status"] == conditions["Failed"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    # Events, each once (kopf posts them shortly after the status they describe).
    expected = ["ServersStarting", *2 * ITERATION_EVENTS, *LAST_EVALUATION_EVENTS]
    wait_for(
        lambda: Counter(event_reasons(api, namespace, "tiny")) == Counter(expected),
        f"the Events {expected}",
        timeout=20,
    )
    # The operator's endpoints, as the chart's probes and Prometheus read them.
    assert json.loads(http_get(f"http://127.0.0.1:{operator.health_port}/healthz")) == {
        "leading": True
    }
    found = samples(f"http://127.0.0.1:{operator.metrics_port}/metrics")
    ours = {"namespace": namespace, "society": "tiny"}
    assert found[("society_phase", frozenset((ours | {"phase": "Succeeded"}).items()))] == 1
    for iteration in range(3):
        labels = frozenset((ours | {"iteration": str(iteration)}).items())
        assert found[("society_eval_accuracy_ratio", labels)] == accuracy(iteration)
    assert found[("society_iteration", frozenset(ours.items()))] == 2
    assert found[("society_operator_leader", frozenset())] == 1
    assert found[("society_reconcile_duration_seconds_count", frozenset())] >= 4
    # SIGTERM, as the kubelet stops the pod: a clean exit.
    assert operator.process is not None
    operator.process.signal(signal.SIGTERM)
    assert operator.process.popen.wait(30) == 0, operator.output()[-3000:]
    operator.process = None

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


def test_a_job_failing_past_backoff_limit_and_the_active_deadline_fail_the_society(
    api, kubectl, namespace, kubelet, operator
):
    """A Job failing past its backoffLimit fails its Society quoting the error. Beside it,
    another Society whose debate's pod is held running: nothing changes in the cluster, only
    the operator's resync can notice its activeDeadlineSeconds; it fails too."""
    kubelet.fail("tiny-debate-it0", "CUDA out of memory while loading the model", exit_code=3)
    kubectl.apply(tiny(namespace, backoffLimit=1))
    late = tiny(namespace, activeDeadlineSeconds=4)
    late["metadata"]["name"] = "late"
    kubelet.hold("late-debate-it0")
    kubectl.apply(late)

    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))
    deadline = run_to_end(api, namespace, "late", Children(api, namespace, "late"), timeout=60)

    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "JobFailed"
    assert "tiny-debate-it0" in failed["message"]
    assert "CUDA out of memory while loading the model" in failed["message"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == conditions["Progressing"] == "False"
    assert status["completionTime"]
    # A failed Society holds no GPUs: its servers go.
    apps = kubernetes.client.AppsV1Api(api)
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items, "the servers gone", 30)
    core = kubernetes.client.CoreV1Api(api)

    def warning() -> list[Any]:
        events = core.list_namespaced_event(namespace, field_selector="reason=JobFailed").items
        return [e for e in events if e.type == "Warning" and "CUDA out of memory" in e.message]

    wait_for(warning, "a Warning Event JobFailed quoting the error", timeout=20)
    assert deadline["phase"] == "Failed", deadline
    failed = next(c for c in deadline["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded", failed
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
        # Up first (importing kopf and the client takes seconds on a loaded machine), then
        # timed: kopf's answer to the 403 would be a minute of retries.
        wait_for(lambda: healthy(running), "the operator's /healthz", timeout=60, every=0.5)
        kubectl.apply(tiny(namespace))
        deadline = time.monotonic() + 10
        created = None
        while time.monotonic() < deadline and not created:
            created = kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace).items
            time.sleep(0.5)
        forbidden = 'cannot list resource "namespaces"' in running.output()
        assert created and not forbidden, (
            "no debate Job 10 s after the Society was created"
            + (": kopf is retrying to list namespaces (forbidden)" if forbidden else "")
            + f"\n{running.output()[-3000:]}"
        )
    finally:
        running.stop()


def healthy(operator: Operator) -> bool:
    try:
        http_get(f"http://127.0.0.1:{operator.health_port}/healthz")
    except OSError:
        return False
    return True


def tiny(namespace: str, **spec: Any) -> dict[str, Any]:
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"] |= spec
    return manifest


def test_raising_iterations_extends_a_succeeded_society(api, kubectl, namespace, kubelet, operator):
    """A Society Succeeded after one iteration, then spec.finetune.iterations raised to 2: the
    last iteration's models are debated on the train split (a Job of its own), trained, and the
    new iteration evaluated; nothing made before is made again."""
    manifest = tiny(namespace)
    manifest["spec"]["finetune"]["iterations"] = 1
    kubectl.apply(manifest)
    children = Children(api, namespace, "tiny")
    first = run_to_end(api, namespace, "tiny", children)
    assert first["phase"] == "Succeeded", first
    assert [entry["iteration"] for entry in first["iterations"]] == [0, 1]

    kubectl.run(
        *("patch", "society", "tiny", "-n", namespace, "--type", "merge"),
        *("-p", '{"spec":{"finetune":{"iterations":2}}}'),
    )
    batch = kubernetes.client.BatchV1Api(api)
    wait_for(
        lambda: any(
            j.metadata.name == "tiny-debate-it1-train"
            for j in batch.list_namespaced_job(namespace).items
        ),
        "the train-split debate of iteration 1",
        timeout=60,
    )
    status = run_to_end(api, namespace, "tiny", children)

    assert status["phase"] == "Succeeded" and status["iteration"] == 2, status
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1, 2]
    assert [entry["accuracy"] for entry in status["iterations"]] == [accuracy(i) for i in (0, 1, 2)]
    assert status["iterations"][1]["trainQuestions"] == 128
    # Iteration 1's server (its models) is made again to debate the train split; nothing else.
    twice = {key: len(uids) for key, uids in children.uids.items() if len(uids) > 1}
    assert twice == {("Deployment", "tiny-vllm", "1"): 2, ("Service", "tiny-vllm", "1"): 2}
    jobs = kubelet.jobs_finished()
    assert len(jobs) == len(set(jobs)) and "tiny-debate-it1-train" in jobs, jobs
    assert sum(job.startswith("tiny-train-") for job in jobs) == 12  # 2 iterations x 3 agents x 2
