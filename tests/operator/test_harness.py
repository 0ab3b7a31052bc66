"""The harness itself: the emulator keeps the apiserver's promises, and kopf runs against it.

The kopf handlers here are throwaway stand-ins for the operator's, shaped like the real thing:
a child Job with a deterministic name and an ownerReference, status written through /status,
a Job watched for the Job controller's verdict, and a restart that must not create twice.
"""

from __future__ import annotations

import threading

import kmock
import kopf
import pytest
from kubernetes.client import ApiException

from .conftest import KubeClient

NS = "default"
MANAGED_BY = {"app.kubernetes.io/managed-by": "harness-demo"}
JOBS = kmock.resource("batch/v1/jobs")


def society(name: str = "demo") -> dict:
    return {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": {"name": "builtin:tiny-arithmetic"}, "task": {"name": "arithmetic"}},
    }


def job(name: str, labels: dict[str, str] | None = None) -> dict:
    container = {"name": "main", "image": "busybox", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def debate_job_name(society_name: str) -> str:
    return f"{society_name}-debate-0"


def society_in_phase(kube: KubeClient, phase: str) -> dict | None:
    body = kube.get("Society", NS, "demo")
    return body if body.get("status", {}).get("phase") == phase else None


def register_demo_handlers(registry: kopf.OperatorRegistry, kube: KubeClient) -> list[str]:
    """Register the stand-in operator; return the reasons its Society handler ran for, in order.

    The handlers call the test's client from kopf's executor threads: fine for a demo, while
    the real operator brings its own client.
    """
    runs: list[str] = []
    lock = threading.Lock()

    @kopf.on.resume("society.dev", "v1alpha1", "societies", registry=registry)
    @kopf.on.create("society.dev", "v1alpha1", "societies", registry=registry)
    def ensure_debate_job(body, name, namespace, patch, reason, **_):
        job_name = debate_job_name(name)
        if kube.find("Job", namespace, job_name) is None:
            child = job(job_name, labels=MANAGED_BY)
            kopf.adopt(child, owner=body)
            kube.create(child)
        patch.status["phase"] = "Running"
        patch.status["jobName"] = job_name
        with lock:  # last, so that a test waiting on it also waits for the create above
            runs.append(reason)

    @kopf.on.delete("society.dev", "v1alpha1", "societies", registry=registry)
    def release(**_):
        """Makes kopf hold a finalizer, so deletion goes through deletionTimestamp first."""

    @kopf.on.field(
        "batch", "v1", "jobs", field="status.succeeded", labels=MANAGED_BY, registry=registry
    )
    def job_finished(new, body, namespace, **_):
        if new:
            owner = next(ref for ref in body["metadata"]["ownerReferences"] if ref["controller"])
            kube.patch_status("Society", namespace, owner["name"], {"phase": "Succeeded"})

    return runs


def test_metadata_is_managed_by_the_server(kube: KubeClient) -> None:
    created = kube.create(society() | {"status": {"phase": "Forged"}})
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert "status" not in created, "only /status may write the status of a Society"

    with_status = kube.patch_status("Society", NS, "demo", {"phase": "Running"})
    assert with_status["metadata"]["generation"] == 1
    assert int(with_status["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    changed = kube.patch("Society", NS, "demo", {"spec": {"agents": 5}, "status": {"phase": "X"}})
    assert changed["metadata"]["generation"] == 2
    assert changed["status"] == {"phase": "Running"}, "the main resource ignores status"
    assert changed["metadata"]["uid"] == meta["uid"]

    unchanged = kube.patch("Society", NS, "demo", {"spec": {"agents": 5}})
    assert unchanged["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_label_selectors_filter_lists(kube: KubeClient) -> None:
    kube.create(job("a", {"role": "debate", "iteration": "0"}))
    kube.create(job("b", {"role": "train", "iteration": "0"}))
    kube.create(job("c", {"role": "train", "iteration": "1"}))

    def names(selector: str) -> list[str]:
        return [item["metadata"]["name"] for item in kube.list("Job", NS, label_selector=selector)]

    assert names("role=train") == ["b", "c"]
    assert names("role==train,iteration=1") == ["c"]
    assert names("role!=train") == ["a"]
    assert names("iteration in (0, 2),role notin (debate)") == ["b"]
    assert names("role") == ["a", "b", "c"]
    assert names("!role") == []
    with pytest.raises(ApiException) as error:
        names("role=(")
    assert error.value.status == 400


def test_writes_are_guarded_by_resource_versions(kube: KubeClient) -> None:
    first = kube.create(society())
    current = kube.patch("Society", NS, "demo", {"metadata": {"labels": {"a": "b"}}})

    with pytest.raises(ApiException) as error:  # kopf retries its finalizer patches on 422 only
        stale = first["metadata"]["resourceVersion"]
        test = {"op": "test", "path": "/metadata/resourceVersion", "value": stale}
        kube.patch("Society", NS, "demo", [test, {"op": "remove", "path": "/spec/task"}])
    assert error.value.status == 422

    with pytest.raises(ApiException) as error:
        kube.replace(first | {"spec": {"model": {"name": "other"}}})
    assert error.value.status == 409

    with pytest.raises(ApiException) as error:  # what the typed clients send for a dict body
        strategic = "application/strategic-merge-patch+json"
        path = kube.path("Society", NS, "demo")
        kube.request("PATCH", path, body={"spec": {"agents": 2}}, content_type=strategic)
    assert error.value.status == 415

    replaced = kube.replace(current | {"spec": {"model": {"name": "other"}}})
    assert replaced["spec"] == {"model": {"name": "other"}}
    assert replaced["metadata"]["generation"] == 2
    assert kube.get("Society", NS, "demo") == replaced


def test_watch_resumes_after_a_resource_version(kube: KubeClient) -> None:
    created = kube.create(job("a", MANAGED_BY))
    kube.create(job("b"))
    kube.patch("Job", NS, "a", {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}})

    since = created["metadata"]["resourceVersion"]
    events = kube.watch(
        "Job", NS, resource_version=since, label_selector="app.kubernetes.io/managed-by"
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "a")]
    everything = kube.watch("Job", NS)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in everything] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_finalizers_hold_deletion_and_owners_cascade(kube: KubeClient) -> None:
    owner = kube.create(society())
    ref = {"apiVersion": "society.dev/v1alpha1", "kind": "Society", "name": "demo"}
    ref |= {"uid": owner["metadata"]["uid"], "controller": True}
    child = job("demo-debate-0")
    child["metadata"]["ownerReferences"] = [ref]
    child["metadata"]["finalizers"] = ["example.com/keep"]
    kube.create(child)
    kube.finish_job(NS, "demo-debate-0")  # adds a Pod owned by the Job: a two-level cascade
    (pod,) = kube.list("Pod", NS, label_selector="job-name=demo-debate-0")

    kube.delete("Society", NS, "demo")
    assert kube.find("Society", NS, "demo") is None
    held = kube.get("Job", NS, "demo-debate-0")
    assert held["metadata"]["deletionTimestamp"], "the Job's own finalizer holds it"
    assert kube.find("Pod", NS, pod["metadata"]["name"]) is not None

    with pytest.raises(ApiException) as error:
        finalizers = ["example.com/keep", "example.com/late"]
        kube.patch("Job", NS, "demo-debate-0", {"metadata": {"finalizers": finalizers}})
    assert error.value.status == 422

    kube.patch("Job", NS, "demo-debate-0", {"metadata": {"finalizers": None}})
    assert kube.find("Job", NS, "demo-debate-0") is None
    assert kube.find("Pod", NS, pod["metadata"]["name"]) is None


def test_kopf_creates_watches_and_deletes_children(
    kube: KubeClient, kopf_registry: kopf.OperatorRegistry, running_operator
) -> None:
    register_demo_handlers(kopf_registry, kube)
    running_operator()
    created = kube.create(society())

    child = kube.wait_for(lambda: kube.find("Job", NS, "demo-debate-0"), "the debate Job")
    (owner_ref,) = child["metadata"]["ownerReferences"]
    assert owner_ref["uid"] == created["metadata"]["uid"] and owner_ref["controller"]
    running = kube.wait_for(lambda: society_in_phase(kube, "Running"), "the Society to be Running")
    assert running["status"]["jobName"] == "demo-debate-0"
    assert running["metadata"]["generation"] == 1, "status and kopf's annotations are not spec"

    kube.finish_job(NS, "demo-debate-0", termination_message='{"accuracy": 0.5}')
    kube.wait_for(
        lambda: society_in_phase(kube, "Succeeded"), "the Job handler to mark the Society Succeeded"
    )

    kube.delete("Society", NS, "demo")
    kube.wait_for(lambda: kube.find("Society", NS, "demo") is None, "kopf to release the Society")
    assert kube.find("Job", NS, "demo-debate-0") is None
    assert kube.list("Pod", NS) == []


def test_a_restarted_operator_adopts_what_exists(
    kube: KubeClient,
    kopf_registry: kopf.OperatorRegistry,
    running_operator,
    apiserver,
) -> None:
    runs = register_demo_handlers(kopf_registry, kube)
    operator = running_operator()
    kube.create(society())
    # Stopping before kopf has written its outcome would make it re-run the create handler.
    kube.wait_for(lambda: society_in_phase(kube, "Running"), "the create handler's outcome")

    operator.stop()
    kube.delete("Job", NS, "demo-debate-0")  # lost while the operator was down
    operator.start()
    kube.wait_for(lambda: runs.count("resume") == 1, "the resume handler after a restart")
    assert kube.find("Job", NS, "demo-debate-0") is not None

    operator.stop()
    operator.start()
    kube.wait_for(lambda: runs.count("resume") == 2, "the resume handler after a second restart")
    assert runs == ["create", "resume", "resume"]
    assert len(kube.list("Job", NS)) == 1
    assert len(apiserver.emulator["post", JOBS]) == 2, "one create, one re-create, no duplicate"
