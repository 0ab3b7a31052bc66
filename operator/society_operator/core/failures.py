"""Why a run cannot go on. Every check returns a `Failure` (the Failed condition's reason and
message, and the Job it is about) or None, so the reconciler treats them all alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from society_trainer.config import FinetuneConfig
from society_trainer.results import ResultError, StepError, read_result

from ..api.spec import SocietySpec
from ..api.status import SocietyStatus
from ..build.child import Child
from .observed import ObservedJob, ObservedServer
from .plan import JobRole


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    job: str | None = None
    role: JobRole | None = None


def active_deadline(spec: SocietySpec, status: SocietyStatus, now: datetime) -> Failure | None:
    deadline = spec.activeDeadlineSeconds
    started = status.startTime or now
    if deadline and (now - started).total_seconds() > deadline:
        return Failure(
            "DeadlineExceeded", f"the run took longer than activeDeadlineSeconds ({deadline} s)"
        )
    return None


def server_startup(spec: SocietySpec, server: ObservedServer, now: datetime) -> Failure | None:
    """A server not ready past the startup deadline (loading weights takes minutes, not hours)."""
    waited = (now - server.created).total_seconds()
    deadline = spec.startupDeadlineSeconds
    if waited <= deadline:
        return None
    why = f" ({server.waiting_reason})" if server.waiting_reason else ""
    return Failure(
        "ServerNotReady",
        f"server {server.name} not ready after {waited:.0f} s{why}; "
        f"startupDeadlineSeconds is {deadline}",
    )


def job_startup(spec: SocietySpec, job: ObservedJob, child: Child, now: datetime) -> Failure | None:
    """A Job whose pod has been stuck (image pull, unschedulable) past the startup deadline.
    A Job Kueue holds suspended waits its turn: not stuck."""
    if job.waiting_reason is None or job.created is None:
        return None
    waited = (now - job.created).total_seconds()
    deadline = spec.startupDeadlineSeconds
    if waited <= deadline:
        return None
    return Failure(
        "JobNotStarted",
        f"Job {job.name}'s pod is still {job.waiting_reason} after {waited:.0f} s; "
        f"startupDeadlineSeconds is {deadline}",
        job.name,
        role(child),
    )


def job_failure(job: ObservedJob, child: Child) -> Failure:
    """A Job failed past its backoffLimit, quoting what its step reported."""
    reported = reported_error(job.message)
    detail = f": {reported}" if reported else ""
    return Failure(
        "JobFailed",
        f"Job {job.name} failed ({job.reason or 'Failed'}){detail}",
        job.name,
        role(child),
    )


def role(child: Child) -> JobRole:
    """debate, generation or critic: what the Job was doing."""
    return child.config.role if isinstance(child.config, FinetuneConfig) else "debate"


def reported_error(message: str | None) -> str | None:
    """What the step said when it failed: its JSON error, or the log tail the kubelet kept."""
    if not message:
        return None
    try:
        result = read_result(message, StepError)
    except ResultError:
        result = None
    if isinstance(result, StepError):
        return result.error
    return message.strip().splitlines()[-1][:500]
