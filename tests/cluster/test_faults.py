"""Faults that real clusters and real users bring (issue 16), on the real control plane, with the
operator as its own process holding the chart's ServiceAccount token: a namespace deleted under
running Societies, a step that says its configuration is wrong, a finished child deleted by
someone else, a foreign Job that copies the Society's label, and kube-apiserver and etcd
restarted mid-run.

The operator's own requests are counted from the apiserver's audit log (the control plane logs
every request of the chart's ServiceAccount; `ControlPlane.audit_events`)."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest
import urllib3
import yaml

from society_trainer.results import CONFIG_ERROR_EXIT_CODE

from .conftest import OPERATOR_USER
from .controlplane import GPU, wait_for
from .kubelet import ScriptedKubelet
from .test_operator import SOCIETY_LABEL, TINY, Children, get_society, run_to_end

# Every kind the operator creates for a Society (the API key Secret and NetworkPolicy too).
CHILD_RESOURCES = {
    *("jobs", "deployments", "services", "persistentvolumeclaims"),
    *("secrets", "networkpolicies"),
}


def tiny(namespace: str, name: str = "tiny", **spec: Any) -> dict[str, Any]:
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"] |= {"name": name, "namespace": namespace}
    manifest["spec"] |= spec
    return manifest


def phase(api, namespace: str, name: str) -> str | None:
    return (get_society(api, namespace, name).get("status") or {}).get("phase")


def operator_creates(
    control_plane, namespace: str, since: int = 0, resources=CHILD_RESOURCES
) -> list[dict[str, Any]]:
    """The operator's create requests for `resources` in `namespace`, from the audit log's
    `since`-th event on (any response: a refused create is an attempt too)."""
    return [
        event
        for event in control_plane.audit_events()[since:]
        if event.get("stage") == "ResponseComplete"
        and event.get("verb") == "create"
        and event.get("user", {}).get("username") == OPERATOR_USER
        and (event.get("objectRef") or {}).get("namespace") == namespace
        and (event.get("objectRef") or {}).get("resource") in resources
    ]


# --- 1. a namespace deleted under running Societies ---


def test_deleting_a_namespace_mid_run_stops_creating_children_there_at_once(
    api, kubectl, control_plane, namespace, kubelet, operator
):
    """20 Societies, half Debating and half Training (their Jobs held), then the namespace is
    deleted. The namespace controller deletes their children, each deletion wakes a Society
    that would make it again; the apiserver refuses with 403 NamespaceTerminating. The
    operator stops at the first refusal: a handful of attempts at most (Societies already in
    the middle of a reconcile), one info line, no traceback."""
    names = [f"s{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        if i < 10:
            kubelet.hold(f"{name}-debate-it0")
        else:
            kubelet.hold(f"{name}-train-gen-0-it1")
        kubectl.apply(tiny(namespace, name, agents=2))

    def all_mid_run() -> bool:
        phases = [phase(api, namespace, name) for name in names]
        return phases == ["Debating"] * 10 + ["Training"] * 10

    wait_for(all_mid_run, "10 Societies Debating and 10 Training", timeout=240, every=1)
    made = len(operator_creates(control_plane, namespace))
    assert made >= 20 * 3, made  # claim, server, Service, Jobs: the audit log sees the operator
    since = len(control_plane.audit_events())

    kubectl.run("delete", "namespace", namespace, "--wait=false")
    core = kubernetes.client.CoreV1Api(api)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except kubernetes.client.ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, f"namespace {namespace} deleted", timeout=180, every=1)
    time.sleep(6)  # a resync period more: nothing is retried later either

    after = operator_creates(control_plane, namespace, since)
    refused = [e for e in after if e.get("responseStatus", {}).get("code") == 403]
    operator.stop()  # and nothing goes wrong while it stops, either
    log = operator.output()
    assert len(after) <= len(names), (
        f"{len(after)} create attempts after the namespace's deletion began "
        f"({len(refused)} refused)"
    )
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 300) : at + 3000]
    said = [line for line in log.splitlines() if f"namespace {namespace} is being deleted" in line]
    # Said once, at the first refusal; the namespace may also go before a Society of it
    # wanted anything created (its Societies are deleted with their children).
    assert len(said) == min(1, len(refused)), said
    # Events are not children: kopf posts the ones already queued, retrying a refusal (its
    # own backoff, ERROR lines without a traceback) until the namespace is gone.
    events = operator_creates(control_plane, namespace, since, {"events"})
    print(
        f"after the deletion: {len(after)} child create attempts ({len(refused)} refused), "
        f"{len(events)} Event posts"
    )


# --- 2. a step that says its configuration is wrong ---


def test_a_config_error_exit_code_fails_the_job_at_once_without_retries(
    api, kubectl, namespace, kubelet, operator
):
    """Exit code 78 (CONFIG_ERROR_EXIT_CODE): the Job's podFailurePolicy fails the Job on the
    first pod, with backoffLimit 2 unused; the Society ends Failed quoting the error."""
    error = "config error: task.maxValue must be at least 1"
    kubelet.fail("tiny-debate-it0", error, exit_code=CONFIG_ERROR_EXIT_CODE)
    kubectl.apply(tiny(namespace, backoffLimit=2))

    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))

    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert "tiny-debate-it0" in failed["message"] and error in failed["message"], failed
    job = kubernetes.client.BatchV1Api(api).read_namespaced_job("tiny-debate-it0", namespace)
    conditions = {c.type: c for c in job.status.conditions or []}
    assert conditions["Failed"].reason == "PodFailurePolicy", conditions["Failed"]
    time.sleep(2)  # a retry would have made its pod by now
    assert kubelet.jobs_finished() == ["tiny-debate-it0"]
    pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=tiny-debate-it0"
    )
    assert len(pods.items) == 1 and job.status.failed == 1


# --- 3. a finished debate Job deleted while training runs ---


def test_a_finished_debate_job_deleted_during_training_is_not_run_again(
    api, kubectl, namespace, kubelet, operator
):
    """As a user or a ttlSecondsAfterFinished policy would: the debate's completion is in the
    Society's status, so no server comes back and no debate Job is made again; the Society
    finishes."""
    kubelet.hold("tiny-train-gen-0-it1")
    kubectl.apply(tiny(namespace))
    children = Children(api, namespace, "tiny")
    wait_for(lambda: children.poll() or phase(api, namespace, "tiny") == "Training", "Training", 60)
    batch, apps = kubernetes.client.BatchV1Api(api), kubernetes.client.AppsV1Api(api)
    debate_uid = batch.read_namespaced_job("tiny-debate-it0", namespace).metadata.uid

    kubectl.run("delete", "job", "tiny-debate-it0", "-n", namespace, "--wait=true")
    deadline = time.monotonic() + 12  # two resync periods and every watch event
    while time.monotonic() < deadline:
        children.poll()
        servers = apps.list_namespaced_deployment(
            namespace, label_selector=f"{SOCIETY_LABEL}=tiny"
        ).items
        assert not [d for d in servers if (d.spec.replicas or 0) > 0], "a server came back"
        jobs = {j.metadata.name for j in batch.list_namespaced_job(namespace).items}
        assert "tiny-debate-it0" not in jobs, "the debate Job was made again"
        assert phase(api, namespace, "tiny") == "Training"
        time.sleep(0.5)

    kubelet.release("tiny-train-gen-0-it1")
    status = run_to_end(api, namespace, "tiny", children)
    assert status["phase"] == "Succeeded", status
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1, 2]
    assert children.uids[("Job", "tiny-debate-it0", "0")] == {debate_uid}
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, twice


# --- 4. a foreign Job with the Society's label ---


def foreign_job(namespace: str) -> dict[str, Any]:
    """8 A100s, the Society's label on the Job and its pod, no ownerReference."""
    labels = {SOCIETY_LABEL: "tiny", "society.dev/iteration": "1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "tiny-train-gen-0-it9", "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
                    "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "finetune",
                            "image": "busybox",
                            "resources": {"limits": {GPU: "8"}},
                        }
                    ],
                },
            },
        },
    }


def test_a_foreign_job_with_the_society_label_changes_nothing(
    api, kubectl, namespace, kubelet, operator
):
    """It adds no GPU-seconds (8 GPUs running for the whole run would add hundreds), it is
    neither deleted, suspended nor changed, and the Society runs as without it."""
    foreign = foreign_job(namespace)
    kubelet.hold(foreign["metadata"]["name"])
    kubectl.apply(foreign)
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)

    def foreign_running() -> bool:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={foreign['metadata']['name']}"
        ).items
        return any(p.status.phase == "Running" for p in pods)

    wait_for(foreign_running, "the foreign Job's pod Running", timeout=60)
    before = batch.read_namespaced_job(foreign["metadata"]["name"], namespace)
    time.sleep(10)  # 80 GPU-seconds before the Society starts
    gpu = {
        "gpus": 1,
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    }
    kubectl.apply(tiny(namespace, training=gpu))
    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))

    assert status["phase"] == "Succeeded", status
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1, 2]
    # Its own 6 training pods, 1 GPU each, a few seconds each at most.
    assert status.get("gpuSeconds", 0) < 60, status.get("gpuSeconds")
    after = batch.read_namespaced_job(foreign["metadata"]["name"], namespace)
    assert after.metadata.uid == before.metadata.uid
    assert after.metadata.deletion_timestamp is None and not after.spec.suspend
    assert after.metadata.labels == before.metadata.labels
    assert not after.metadata.owner_references
    assert foreign_running()  # still held: the scripted kubelet cannot finish a foreign pod


# --- 5. kube-apiserver and etcd restarted mid-run ---


class PatientKubelet(ScriptedKubelet):
    """The scripted kubelet, riding out an apiserver or etcd that is down for a while (the
    plain one reports any connection error as a failure)."""

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._tick()
            except kubernetes.client.ApiException as error:
                if error.status not in (404, 409) and error.status < 500:
                    self.errors.append(error)
            except (urllib3.exceptions.HTTPError, OSError):
                continue  # down: next tick
            except Exception as error:
                self.errors.append(error)
                return


def test_apiserver_and_etcd_restarted_mid_run(api, kubectl, control_plane, namespace, operator):
    """kube-apiserver stopped and started while the Society debates, etcd while it trains: it
    still finishes, no child is made twice (uids), the artifact claim is the one it began with
    and every iteration's results are in the status."""
    with PatientKubelet(api, namespace) as kubelet:
        kubelet.hold("tiny-debate-it0")
        kubelet.hold("tiny-train-gen-0-it1")
        kubectl.apply(tiny(namespace))
        children = Children(api, namespace, "tiny")
        core = kubernetes.client.CoreV1Api(api)

        def poll_phase() -> str | None:
            try:
                children.poll()
                return phase(api, namespace, "tiny")
            except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError):
                return None

        wait_for(lambda: poll_phase() == "Debating", "Debating", timeout=60)
        claim_uid = core.read_namespaced_persistent_volume_claim(
            "tiny-artifacts", namespace
        ).metadata.uid
        control_plane.restart("kube-apiserver", down=3)
        time.sleep(3)  # the operator's watches reconnect
        kubelet.release("tiny-debate-it0")

        wait_for(lambda: poll_phase() == "Training", "Training", timeout=90, every=0.5)
        control_plane.restart("etcd", down=3)
        time.sleep(3)
        kubelet.release("tiny-train-gen-0-it1")

        deadline = time.monotonic() + 150
        while poll_phase() not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(0.5)
        status = get_society(api, namespace, "tiny")["status"]

    assert status["phase"] == "Succeeded", status
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1, 2]
    for entry in status["iterations"]:
        assert entry.get("accuracy") is not None, entry
    assert len(status["iterations"][0]["datasets"]) == 6  # 3 agents x (generation, critic)
    claim = core.read_namespaced_persistent_volume_claim("tiny-artifacts", namespace)
    assert claim.metadata.uid == claim_uid and claim.status.phase == "Bound"
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, twice
    jobs = kubelet.jobs_finished()
    assert len(jobs) == len(set(jobs)), f"a Job ran more than one pod: {jobs}"


@pytest.fixture(autouse=True)
def _control_plane_alive(control_plane):
    """A restart that did not come back fails here, not in the next module's tests."""
    yield
    control_plane.check()
