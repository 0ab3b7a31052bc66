"""From the objects the apiserver returns to what the reconciler needs to know about them.

Pure, like the reconciler: the controller passes the Society's Jobs, Deployments and Pods from
its watch caches (by the society.dev/society label) as raw objects.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..api.kube import GPU_RESOURCE
from ..build.names import LABEL_ITERATION, LABEL_SERVER, LABEL_SOCIETY
from .observed import JobPhase, Observed, ObservedJob, ObservedServer

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set on a Job's pods by the job controller
# Pod waiting reasons that will not fix themselves (the startup deadline then fails the Society).
STUCK_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerError",
    "InvalidImageName",
    "CreateContainerConfigError",
}


# What `observe` reads of a child, and nothing else: the controller's watch caches keep only
# this (`project`), so memory does not grow with the rest of every pod and Job. `True`: the value
# as it is; a dict: those keys of a mapping; a one-element list: each item of a list so.
_STATE = {
    "running": {"startedAt": True},
    "terminated": {"startedAt": True, "finishedAt": True, "message": True},
    "waiting": {"reason": True},
}
READ: dict[str, Any] = {
    "metadata": {
        "name": True,
        "uid": True,
        "creationTimestamp": True,
        "labels": dict.fromkeys(
            (LABEL_SOCIETY, LABEL_ITERATION, LABEL_SERVER, JOB_NAME_LABEL), True
        ),
        "ownerReferences": [{"uid": True, "controller": True}],
    },
    "spec": {
        "suspend": True,  # Jobs
        "replicas": True,  # Deployments
        "containers": [{"resources": {"limits": {GPU_RESOURCE: True}}}],  # pods
    },
    "status": {
        "active": True,  # Jobs
        "completionTime": True,
        "conditions": [{"type": True, "status": True, "reason": True, "lastTransitionTime": True}],
        "readyReplicas": True,  # Deployments
        "phase": True,  # claims
        "containerStatuses": [{"state": _STATE, "lastState": _STATE}],  # pods
    },
}


def project(value: Any, shape: Any = READ) -> Any:
    """`value` cut to `shape` (by default what `observe` reads): observe answers the same. Its
    strings are interned (see `interned`)."""
    if shape is True:
        return interned(value)
    if isinstance(shape, list):
        return [project(item, shape[0]) for item in value] if isinstance(value, list) else value
    if not isinstance(value, Mapping):  # kopf's bodies are Mappings, not dicts
        return interned(value)
    return {key: project(value[key], inner) for key, inner in shape.items() if key in value}


def interned(value: Any) -> Any:
    """`value` with every string in it, keys too, replaced by the one interned copy. Each object
    the watch brings is parsed anew, so "True", "Complete", label values and every key of a
    Society are separate strings per object: interned, a kept child is a third smaller (2.2 KB
    from 3.2) and a kept Society half as big (7.3 KB from 15.8)."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, Mapping):
        return {sys.intern(key): interned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interned(item) for item in value]
    return value


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _true_conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def termination_message(pods: Iterable[dict[str, Any]]) -> str | None:
    """The newest terminated container's message among `pods` (a Job's retries are pods)."""
    found = [
        (terminated.get("finishedAt") or "", terminated["message"])  # RFC 3339 sorts as text
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or []
        for state in (status.get("state") or {}, status.get("lastState") or {})
        if (terminated := state.get("terminated")) and terminated.get("message")
    ]
    return max(found)[1] if found else None


def observe_job(job: dict[str, Any], pods: Iterable[dict[str, Any]]) -> ObservedJob:
    pods = list(pods)
    conditions = _true_conditions(job)
    status = job.get("status") or {}
    phase: JobPhase
    reason = None
    if "Complete" in conditions:
        phase = "succeeded"
    elif "Failed" in conditions:
        phase, reason = "failed", conditions["Failed"].get("reason")
    elif (job.get("spec") or {}).get("suspend"):
        phase = "suspended"
    elif status.get("active"):
        phase = "running"
    else:
        phase = "pending"
    message = termination_message(pods) if phase in ("succeeded", "failed") else None
    finished_at = _time(
        status.get("completionTime") or conditions.get("Failed", {}).get("lastTransitionTime")
    )
    stuck = _waiting_reason(pods) if phase in ("pending", "running") else None
    return ObservedJob(
        job["metadata"]["name"],
        phase,
        message,
        reason,
        finished_at,
        waiting_reason=stuck,
        created=_time(job["metadata"].get("creationTimestamp")),
        uid=job["metadata"].get("uid"),
    )


def _gpus(pod: dict[str, Any]) -> int:
    containers = (pod.get("spec") or {}).get("containers") or []
    return sum(
        int(((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE, 0))
        for c in containers
    )


def gpu_seconds(pods: Iterable[dict[str, Any]], now: datetime) -> float:
    """GPU-seconds the pods have used: each container run (restarts too) times the pod's GPUs.

    A pod holds its GPUs from its container's start to its end (or now); time spent Pending or
    pulling images is not counted, as no GPU is in use then.
    """
    total = 0.0
    for pod in pods:
        gpus = _gpus(pod)
        if not gpus:
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                run = state.get("running") or state.get("terminated") or {}
                start = _time(run.get("startedAt"))
                end = _time(run.get("finishedAt")) or (now if "running" in state else None)
                if start and end and end > start:
                    total += gpus * (end - start).total_seconds()
    return total


def _waiting_reason(pods: Iterable[dict[str, Any]]) -> str | None:
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                return waiting["reason"]
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return condition.get("reason") or "Unschedulable"
    return None


def observe_server(
    deployment: dict[str, Any], pods: list[dict[str, Any]], now: datetime, service: bool = True
) -> ObservedServer:
    meta = deployment["metadata"]
    status = deployment.get("status") or {}
    return ObservedServer(
        name=meta["name"],
        iteration=int(meta["labels"][LABEL_ITERATION]),
        replicas=int((deployment.get("spec") or {}).get("replicas", 1)),
        ready=int(status.get("readyReplicas") or 0) >= 1,
        created=_time(meta["creationTimestamp"]),
        waiting_reason=_waiting_reason(pods),
        gpu_seconds=gpu_seconds(pods, now),
        service=service,
    )


def owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    """Whether the Society with this uid controls the object (its ownerReference says so)."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def observe(
    society_name: str,
    uid: str | None,
    jobs: Iterable[dict[str, Any]],
    deployments: Iterable[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    claims: Iterable[dict[str, Any]],
    now: datetime,
    services: Iterable[dict[str, Any]] | None = None,
) -> Observed:
    """Only this Society's children count: Jobs and Deployments that carry its label AND an
    ownerReference to its uid (a foreign object that copied the label, or a child of an older
    Society of the same name, is not ours), and the pods of those. `services`: None when they
    are not watched (every server's Service is taken to exist)."""

    def ours(obj: dict[str, Any]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return labels.get(LABEL_SOCIETY) == society_name and owned_by(obj, uid)

    jobs = [job for job in jobs if ours(job)]
    claims = [
        c for c in claims if (c["metadata"].get("labels") or {}).get(LABEL_SOCIETY) == society_name
    ]
    deployments = [d for d in deployments if ours(d)]
    service_names = (
        None if services is None else {s["metadata"]["name"] for s in services if ours(s)}
    )
    job_names = {job["metadata"]["name"] for job in jobs}
    server_names = {d["metadata"]["name"] for d in deployments}
    by_job: dict[str, list[dict[str, Any]]] = {name: [] for name in job_names}
    by_server: dict[str, list[dict[str, Any]]] = {name: [] for name in server_names}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(LABEL_SOCIETY) != society_name:
            continue
        if labels.get(JOB_NAME_LABEL) in by_job:
            by_job[labels[JOB_NAME_LABEL]].append(pod)
        if labels.get(LABEL_SERVER) in by_server:
            by_server[labels[LABEL_SERVER]].append(pod)
    return Observed(
        jobs={
            job["metadata"]["name"]: observe_job(job, by_job[job["metadata"]["name"]])
            for job in jobs
        },
        servers={
            d["metadata"]["name"]: observe_server(
                d,
                by_server[d["metadata"]["name"]],
                now,
                service_names is None or d["metadata"]["name"] in service_names,
            )
            for d in deployments
        },
        claim=bool(claims),
        claim_pending_since=next(
            (
                _time(c["metadata"].get("creationTimestamp"))
                for c in claims
                if (c.get("status") or {}).get("phase", "Pending") == "Pending"
            ),
            None,
        ),
        job_gpu_seconds=sum(gpu_seconds(job_pods, now) for job_pods in by_job.values()),
    )
