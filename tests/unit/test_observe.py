"""Reading Jobs, Deployments and Pods as the apiserver returns them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pytest

from society_operator.core.observe import (
    gpu_seconds,
    interned,
    observe,
    observe_job,
    project,
    termination_message,
)

LABELS = {"society.dev/society": "phi3"}
UID = "phi3-uid"
OWNED = [{"kind": "Society", "name": "phi3", "uid": UID, "controller": True}]
NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def _on_projections(read):
    def projected(arg):
        if isinstance(arg, dict):
            return project(arg)
        if isinstance(arg, list):
            return [project(item) for item in arg]
        return arg

    def wrapper(*args, **kwargs):
        args = [projected(arg) for arg in args]
        return read(*args, **{key: projected(value) for key, value in kwargs.items()})

    return wrapper


@pytest.fixture(autouse=True, params=["whole", "projected"])
def cached(request, monkeypatch):
    """Every test twice: on objects as the apiserver sends them, and as the operator's watch
    caches keep them (`project`, kube/handlers.py): what observe reads must survive the cut."""
    if request.param == "projected":
        module = sys.modules[__name__]
        for name in ("observe", "observe_job", "gpu_seconds", "termination_message"):
            monkeypatch.setattr(module, name, _on_projections(getattr(module, name)))


def job(name: str, status: dict, suspend: bool = False) -> dict:
    return {
        "metadata": {"name": name, "labels": LABELS, "ownerReferences": OWNED},
        "spec": {"suspend": suspend},
        "status": status,
    }


def pod(job_name: str, message: str | None, finished: str, last: bool = False) -> dict:
    terminated = {"exitCode": 0, "finishedAt": finished}
    if message is not None:
        terminated["message"] = message
    state = {"lastState" if last else "state": {"terminated": terminated}}
    return {
        "metadata": {
            "name": f"{job_name}-x",
            "labels": {**LABELS, "batch.kubernetes.io/job-name": job_name},
        },
        "status": {"containerStatuses": [{"name": "debate", **state}]},
    }


def condition(kind: str, reason: str | None = None) -> dict:
    return {"type": kind, "status": "True", **({"reason": reason} if reason else {})}


def test_job_phases():
    assert observe_job(job("a", {}), []).phase == "pending"
    assert observe_job(job("a", {"active": 1}), []).phase == "running"
    assert observe_job(job("a", {}, suspend=True), []).phase == "suspended"
    done = observe_job(
        job("a", {"succeeded": 1, "conditions": [condition("Complete")]}),
        [pod("a", json.dumps({"eval": {"accuracy": 0.5}}), "2026-11-21T10:00:00Z")],
    )
    assert done.phase == "succeeded" and json.loads(done.message)["eval"]["accuracy"] == 0.5
    failed = observe_job(
        job(
            "a",
            {
                "failed": 3,
                "conditions": [
                    condition("FailureTarget", "BackoffLimitExceeded"),
                    condition("Failed", "BackoffLimitExceeded"),
                ],
            },
        ),
        [],
    )
    assert (failed.phase, failed.reason, failed.message) == ("failed", "BackoffLimitExceeded", None)


def test_the_newest_pods_message_wins():
    pods = [
        pod("a", '{"error": "first try"}', "2026-11-21T10:00:00Z"),
        pod("a", '{"error": "third try"}', "2026-11-21T10:20:00Z"),
        pod("a", '{"error": "second try"}', "2026-11-21T10:10:00Z", last=True),
        pod("a", None, "2026-11-21T10:30:00Z"),  # killed before it wrote anything
    ]
    assert termination_message(pods) == '{"error": "third try"}'
    assert termination_message([]) is None


def deployment(name: str, iteration: int, ready: int, replicas: int = 1) -> dict:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": "2026-11-21T09:00:00Z",
            "labels": {**LABELS, "society.dev/iteration": str(iteration)},
            "ownerReferences": OWNED,
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def server_pod(server: str, status: dict) -> dict:
    return {
        "metadata": {"name": f"{server}-abc", "labels": {**LABELS, "society.dev/server": server}},
        "status": status,
    }


def test_servers_readiness_and_why_they_are_stuck():
    pull = server_pod(
        "phi3-vllm",
        {
            "containerStatuses": [
                {"name": "vllm", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ]
        },
    )
    unschedulable = server_pod(
        "phi3-vllm-gen-0-it1",
        {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]},
    )
    starting = server_pod(
        "phi3-vllm-gen-1-it1",
        {
            "containerStatuses": [
                {"name": "vllm", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]
        },
    )
    seen = observe(
        "phi3",
        UID,
        jobs=[],
        deployments=[
            deployment("phi3-vllm", 0, 0),
            deployment("phi3-vllm-gen-0-it1", 1, 0),
            deployment("phi3-vllm-gen-1-it1", 1, 0),
            deployment("phi3-vllm-x", 1, 1, 0),
        ],
        pods=[pull, unschedulable, starting],
        claims=[
            {"metadata": {"name": "phi3-artifacts", "labels": LABELS}, "status": {"phase": "Bound"}}
        ],
        now=NOW,
    )
    servers = seen.servers
    assert servers["phi3-vllm"].waiting_reason == "ImagePullBackOff"
    assert servers["phi3-vllm-gen-0-it1"].waiting_reason == "Unschedulable"
    assert servers["phi3-vllm-gen-1-it1"].waiting_reason is None  # still starting: not stuck
    assert servers["phi3-vllm-x"].ready and servers["phi3-vllm-x"].replicas == 0
    assert servers["phi3-vllm"].iteration == 0 and servers["phi3-vllm-gen-0-it1"].iteration == 1
    assert servers["phi3-vllm"].created == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert seen.claim is True and seen.claim_pending_since is None


def test_other_societies_objects_are_ignored():
    other = {"society.dev/society": "mistral"}
    foreign = job("mistral-debate-it0", {"active": 1})
    foreign["metadata"]["labels"] = other
    seen = observe(
        "phi3",
        UID,
        jobs=[foreign, job("phi3-debate-it0", {"active": 1})],
        deployments=[],
        pods=[],
        claims=[],
        now=NOW,
    )
    assert list(seen.jobs) == ["phi3-debate-it0"]


def gpu_pod(gpus: int, *states: dict, labels: dict | None = None) -> dict:
    resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
    state, *last = states
    status = {"name": "main", "state": state} | ({"lastState": last[0]} if last else {})
    return {
        "metadata": {"name": "p", "labels": labels or LABELS},
        "spec": {"containers": [{"name": "main", "resources": resources}]},
        "status": {"containerStatuses": [status]},
    }


def test_gpu_seconds_count_every_run_of_every_gpu_container():
    finished = {
        "terminated": {"startedAt": "2026-11-21T11:00:00Z", "finishedAt": "2026-11-21T11:10:00Z"}
    }
    running = {"running": {"startedAt": "2026-11-21T11:59:00Z"}}
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    assert gpu_seconds([gpu_pod(2, finished)], NOW) == 2 * 600
    assert gpu_seconds([gpu_pod(1, running, finished)], NOW) == 60 + 600  # a restarted container
    assert gpu_seconds([gpu_pod(4, waiting)], NOW) == 0  # no GPU is busy before the start
    assert gpu_seconds([gpu_pod(0, finished)], NOW) == 0  # a CPU pod


def test_job_pods_gpu_seconds_are_summed_whatever_the_job():
    finished = {
        "terminated": {"startedAt": "2026-11-21T11:00:00Z", "finishedAt": "2026-11-21T11:01:00Z"}
    }
    labels = {**LABELS, "batch.kubernetes.io/job-name": "phi3-train-gen-0-it1"}
    jobs = [job("phi3-train-gen-0-it1", {"succeeded": 1})]
    seen = observe("phi3", UID, jobs, [], [gpu_pod(1, finished, labels=labels)] * 3, [], NOW)
    assert seen.job_gpu_seconds == 180


def test_objects_with_the_label_but_not_owned_by_the_society_are_not_ours():
    """A foreign Job or Deployment that copied the label (or a child of an older Society of the
    same name) neither counts as a child nor adds GPU-seconds, nor do the pods it runs."""
    finished = {
        "terminated": {"startedAt": "2026-11-21T11:00:00Z", "finishedAt": "2026-11-21T11:01:00Z"}
    }
    foreign_job = job("phi3-debate-it0", {"active": 1})
    foreign_job["metadata"]["ownerReferences"] = [{"uid": "someone-else", "controller": True}]
    unowned = deployment("phi3-vllm", 0, 1)
    del unowned["metadata"]["ownerReferences"]
    labels = {**LABELS, "batch.kubernetes.io/job-name": "phi3-debate-it0"}
    seen = observe(
        "phi3", UID, [foreign_job], [unowned], [gpu_pod(1, finished, labels=labels)], [], NOW
    )
    assert seen.jobs == {} and seen.servers == {} and seen.job_gpu_seconds == 0


def test_a_server_knows_whether_its_service_is_there():
    service = {"metadata": {"name": "phi3-vllm", "labels": LABELS, "ownerReferences": OWNED}}
    foreign = {"metadata": {"name": "phi3-vllm", "labels": LABELS}}  # not the Society's
    servers = [deployment("phi3-vllm", 0, 1)]
    seen = observe("phi3", UID, [], servers, [], [], NOW, services=[service])
    assert seen.servers["phi3-vllm"].service is True
    seen = observe("phi3", UID, [], servers, [], [], NOW, services=[foreign])
    assert seen.servers["phi3-vllm"].service is False


def test_a_claim_not_bound_yet_is_pending_since_its_creation():
    pending = {
        "metadata": {
            "name": "phi3-artifacts",
            "labels": LABELS,
            "creationTimestamp": "2026-11-21T11:00:00Z",
        },
        "status": {"phase": "Pending"},
    }
    seen = observe("phi3", UID, [], [], [], [pending], NOW)
    assert seen.claim and seen.claim_pending_since == datetime(2026, 11, 21, 11, tzinfo=UTC)


def test_the_watch_caches_keep_only_what_observe_reads():
    whole = gpu_pod(
        1, {"terminated": {"startedAt": "2026-11-21T11:00:00Z", "message": "{}", "exitCode": 0}}
    )
    whole["metadata"] |= {
        "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
        "annotations": {"big": "x" * 10_000},
        "labels": {**LABELS, "pod-template-hash": "abc", "batch.kubernetes.io/job-name": "j"},
        "ownerReferences": [{"kind": "Job", "name": "j", "uid": "u", "controller": True}],
    }
    whole["spec"]["containers"][0] |= {"image": "trainer", "env": [{"name": "A", "value": "b"}]}
    whole["spec"]["volumes"] = [{"name": "artifacts"}]
    whole["status"]["conditions"] = [{"type": "Ready", "status": "True", "message": "m"}]
    assert project(whole) == {
        "metadata": {
            "name": "p",
            "labels": {**LABELS, "batch.kubernetes.io/job-name": "j"},
            "ownerReferences": [{"uid": "u", "controller": True}],
        },
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"startedAt": "2026-11-21T11:00:00Z", "message": "{}"}}}
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_kept_objects_share_their_strings():
    """Each object the watch brings is parsed anew; what the caches keep of two of them shares
    one copy of each string (keys, "True", label values), however many objects there are."""
    text = json.dumps(
        {
            "metadata": {"name": "p", "labels": LABELS, "uid": "u-1"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        }
    )
    first, second = (project(json.loads(text)) for _ in range(2))
    assert first == second == json.loads(text)
    condition = (first["status"]["conditions"][0], second["status"]["conditions"][0])
    assert condition[0]["type"] is condition[1]["type"]
    assert (
        first["metadata"]["labels"]["society.dev/society"]
        is (second["metadata"]["labels"]["society.dev/society"])
    )
    society = '{"spec": {"debate": {"rounds": 2}}, "status": {"phase": ["Training"]}}'
    one, other = (interned(json.loads(society)) for _ in range(2))
    assert one == other == json.loads(society)
    assert next(iter(one["spec"])) is next(iter(other["spec"]))
    assert one["status"]["phase"][0] is other["status"]["phase"][0]
