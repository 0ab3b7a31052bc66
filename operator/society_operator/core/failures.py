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
    """A server not ready past the startup deadline (loading weights takes minutes, not hours).
    A server whose pod Kueue holds (a scheduling gate until admitted) waits its turn: not stuck."""
    if server.waiting_reason == "SchedulingGated":
        return None
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


# Every step mounts the claim: it must be ReadWriteMany, which the default storage classes of
# GKE, EKS and AKS are not (they are ReadWriteOnce), so such a claim never binds.
RWX_HINT = (
    "every step mounts it ReadWriteMany, which the default storage classes of GKE, EKS and AKS "
    "do not provide: set storage.storageClassName to a ReadWriteMany class, or storage.claimName "
    "to a bound claim (docs/install.md)"
)


def claim_binding(
    spec: SocietySpec, name: str, pending_since: datetime | None, now: datetime
) -> Failure | None:
    """The operator's artifact claim still Pending past the startup deadline."""
    if pending_since is None:
        return None
    waited = (now - pending_since).total_seconds()
    deadline = spec.startupDeadlineSeconds
    if waited <= deadline:
        return None
    return Failure(
        "ClaimNotBound",
        f"artifact claim {name} is still Pending after {waited:.0f} s "
        f"(startupDeadlineSeconds is {deadline}); {RWX_HINT}",
    )


def claim_lost(name: str) -> Failure:
    """The operator's artifact claim deleted after the run began: recreating it would start
    the next step on an empty volume, without the weights and data it needs."""
    return Failure(
        "ClaimLost",
        f"artifact claim {name} was deleted mid-run, and the run's artifacts with it; it is not "
        "created again empty: delete the Society and apply it again to start over",
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
