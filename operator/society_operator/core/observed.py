"""What the reconciler knows about a Society's children: typed readings of raw objects
(`observe.py` makes them from Jobs, Deployments and Pods; `society run` from its records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

JobPhase = Literal["pending", "running", "succeeded", "failed", "suspended"]


@dataclass(frozen=True)
class ObservedJob:
    name: str
    phase: JobPhase
    message: str | None = None  # the termination message of its last pod
    reason: str | None = None  # the Job's Failed condition reason, e.g. BackoffLimitExceeded
    finished_at: datetime | None = None  # when the Job succeeded or failed
    waiting_reason: str | None = None  # a pod stuck before running: ImagePullBackOff, Unschedulable
    created: datetime | None = None
    uid: str | None = None  # Kueue's Workload names its Job by uid (label kueue.x-k8s.io/job-uid)

    @property
    def done(self) -> bool:
        """The Job's verdict is in (its pod's message may still be on its way)."""
        return self.phase in ("succeeded", "failed")


@dataclass(frozen=True)
class ObservedServer:
    name: str
    iteration: int  # the society.dev/iteration label: which models it serves
    replicas: int
    ready: bool
    created: datetime
    waiting_reason: str | None = None  # e.g. ImagePullBackOff, Unschedulable
    gpu_seconds: float = 0.0  # used by its current pods
    service: bool = True  # its Service (same name) exists: the debate reaches it through it


@dataclass(frozen=True)
class Observed:
    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    servers: dict[str, ObservedServer] = field(default_factory=dict)
    claim: bool = False  # the artifact claim the operator made exists
    claim_pending_since: datetime | None = None  # ... but is not bound yet, since its creation
    job_gpu_seconds: float = 0.0  # used by the pods of every Job (they outlive the Jobs' runs)
