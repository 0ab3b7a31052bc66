"""The Society state machine, as a pure function: (Society, observed children, now) -> Plan.

Level-triggered: every call recomputes what should exist from what is observed, so a missed
event, a duplicate event or an operator restart at any instant leads to the same end state.
For iteration i (status.iteration):

    Serving(i)   the servers of iteration i exist and become ready
    Debating(i)  the debate Job of iteration i runs; its termination message gives the results
    Training     (i < L) servers go away (GPUs freed), the Jobs that train iteration i+1 run;
                 when all succeed, status.iteration becomes i+1
    Succeeded    after the debate of iteration L (evaluation only)
    Failed       a Job failed past its backoffLimit, a server never became ready within
                 startupDeadlineSeconds, or activeDeadlineSeconds passed

Suspended (spec.suspend) deletes nothing: servers scale to zero, running Jobs are suspended (their
pods stop; a debate resumes from its transcript, a training step from its checkpoint), and no new
Job starts. The kopf handlers (handlers.py) observe, call `reconcile`, and apply the Plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .api import Society
from .api.kube import Condition, ConditionType
from .api.status import DatasetSize, IterationStatus, Phase, SocietyStatus
from .builders import (
    build_claim,
    build_debate_job,
    build_server,
    build_training_jobs,
    claim_name,
    servers,
)
from .settings import Settings

JobPhase = Literal["pending", "running", "succeeded", "failed", "suspended"]
# The pod that carries a Job's termination message and the Job's verdict arrive on different
# watches, so the verdict may come first; a result still missing after this long is lost.
RESULTS_GRACE_SECONDS = 60


@dataclass(frozen=True)
class ObservedJob:
    name: str
    phase: JobPhase
    message: str | None = None  # the termination message of its last pod
    reason: str | None = None  # the Job's Failed condition reason, e.g. BackoffLimitExceeded
    finished: datetime | None = None  # when the Job succeeded or failed
    waiting_reason: str | None = None  # a pod stuck before running: ImagePullBackOff, Unschedulable
    created: datetime | None = None


@dataclass(frozen=True)
class ObservedServer:
    name: str
    iteration: int  # the society.dev/iteration label: which models it serves
    replicas: int
    ready: bool
    created: datetime
    waiting_reason: str | None = None  # e.g. ImagePullBackOff, Unschedulable
    gpu_seconds: float = 0.0  # used by its current pods


@dataclass(frozen=True)
class Observed:
    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    servers: dict[str, ObservedServer] = field(default_factory=dict)
    claim: bool = False
    job_gpu_seconds: float = 0.0  # used by the pods of every Job (they outlive the Jobs' runs)


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"
    job: str | None = None  # the Job it is about, for a JobFailed


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    scale: dict[str, int] = field(default_factory=dict)  # Deployment name -> replicas
    suspend_jobs: dict[str, bool] = field(default_factory=dict)  # Job name -> spec.suspend
    status: SocietyStatus = field(default_factory=SocietyStatus)
    events: list[Event] = field(default_factory=list)


def set_condition(
    status: SocietyStatus,
    kind: ConditionType,
    value: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> None:
    """Update one condition; lastTransitionTime changes only when its status does."""
    new = "True" if value else "False"
    index = next((i for i, c in enumerate(status.conditions) if c.type == kind), None)
    old = None if index is None else status.conditions[index]
    condition = Condition(
        type=kind,
        status=new,
        reason=reason,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=old.lastTransitionTime if old and old.status == new else now,
    )
    if index is None:
        status.conditions.append(condition)
    else:
        status.conditions[index] = condition


class _Run:
    """One reconcile call's working state."""

    def __init__(self, society: Society, observed: Observed, settings: Settings, now: datetime):
        self.society, self.observed, self.settings, self.now = society, observed, settings, now
        self.plan = Plan(status=(society.status or SocietyStatus()).model_copy(deep=True))
        self.status = self.plan.status
        self.generation = society.metadata.generation

    # --- status ---------------------------------------------------------------------------------

    def phase(self, phase: Phase, reason: str, message: str, job: str | None = None) -> None:
        status, generation, now = self.status, self.generation, self.now
        if status.phase != phase:
            kind = "Warning" if phase == "Failed" else "Normal"
            self.plan.events.append(Event(reason, message, kind, job))
        status.phase = phase
        done = phase in ("Succeeded", "Failed")
        set_condition(status, "Ready", phase == "Succeeded", reason, message, generation, now)
        set_condition(status, "Failed", phase == "Failed", reason, message, generation, now)
        set_condition(status, "Suspended", phase == "Suspended", reason, message, generation, now)
        running = not done and phase != "Suspended"
        set_condition(status, "Progressing", running, reason, message, generation, now)
        if done and status.completionTime is None:
            status.completionTime = now

    def fail(self, reason: str, message: str, job: str | None = None) -> None:
        self.stop_servers()
        self.phase("Failed", reason, message, job)

    def iteration_status(self, iteration: int) -> IterationStatus:
        for entry in self.status.iterations:
            if entry.iteration == iteration:
                return entry
        entry = IterationStatus(iteration=iteration, startTime=self.now)
        self.status.iterations.append(entry)
        return entry

    # --- children -------------------------------------------------------------------------------

    def stop_servers(self) -> None:
        for name, server in self.observed.servers.items():
            self.plan.delete.append(("Deployment", name))
            self.plan.delete.append(("Service", name))
            if name in self.status.children.servers:  # not yet stopped by an earlier call
                self.settle_gpu_seconds(server)
        self.status.children.servers = []

    def settle_gpu_seconds(self, server: ObservedServer) -> None:
        """Book a server's GPU time before its pods go away (their record goes with them)."""
        if server.replicas:
            entry = self.iteration_status(server.iteration)
            entry.servingGpuSeconds = (entry.servingGpuSeconds or 0.0) + server.gpu_seconds

    def account_gpu_seconds(self) -> None:
        """Booked server time + the running servers' pods + every Job's pods; never decreases."""
        live = sum(
            server.gpu_seconds
            for name, server in self.observed.servers.items()
            if name in self.status.children.servers
            and server.replicas
            and self.plan.scale.get(name) != 0
        )
        booked = sum(entry.servingGpuSeconds or 0.0 for entry in self.status.iterations)
        total = round(booked + live + self.observed.job_gpu_seconds, 1)
        self.status.gpuSeconds = max(self.status.gpuSeconds, total)

    def ensure_servers(self, iteration: int) -> list[ObservedServer] | None:
        """Create the servers of `iteration` (replacing another iteration's by delete and create);
        the ready ones, or None if some are not."""
        wanted = {}
        for served in servers(self.society, iteration):
            deployment, service = build_server(self.society, self.settings, iteration, served)
            wanted[deployment["metadata"]["name"]] = (deployment, service)
        for name in self.observed.servers.keys() - wanted.keys():
            self.plan.delete += [("Deployment", name), ("Service", name)]
        ready = []
        for name, (deployment, service) in wanted.items():
            seen = self.observed.servers.get(name)
            if seen is None:
                self.plan.create += [deployment, service]
            elif seen.iteration != iteration:  # left from another iteration: start afresh
                self.plan.delete += [("Deployment", name), ("Service", name)]
            elif seen.replicas == 0:  # scaled down by a suspend that has since been lifted
                self.plan.scale[name] = 1
            elif seen.ready:
                ready.append(seen)
            else:
                self.check_startup(seen)
        self.status.children.servers = sorted(wanted)
        return ready if len(ready) == len(wanted) else None

    def check_startup(self, server: ObservedServer) -> None:
        waited = (self.now - server.created).total_seconds()
        if waited > self.society.spec.startupDeadlineSeconds:
            why = f" ({server.waiting_reason})" if server.waiting_reason else ""
            self.fail(
                "ServerNotReady",
                f"server {server.name} not ready after {waited:.0f} s"
                f"{why}; startupDeadlineSeconds is {self.society.spec.startupDeadlineSeconds}",
            )

    def check_job_start(self, job: ObservedJob) -> bool:
        """Fail the run if the Job's pod has been stuck (image pull, unschedulable) past the
        startup deadline; True if it did. A Job Kueue holds suspended waits its turn: not stuck."""
        if job.waiting_reason is None or job.created is None:
            return False
        waited = (self.now - job.created).total_seconds()
        deadline = self.society.spec.startupDeadlineSeconds
        if waited <= deadline:
            return False
        self.fail(
            "JobNotStarted",
            f"Job {job.name}'s pod is still {job.waiting_reason} after {waited:.0f} s; "
            f"startupDeadlineSeconds is {deadline}",
            job.name,
        )
        return True

    def job_failed(self, job: ObservedJob) -> None:
        reported = _reported_error(job.message)
        detail = f": {reported}" if reported else ""
        self.fail(
            "JobFailed", f"Job {job.name} failed ({job.reason or 'Failed'}){detail}", job.name
        )

    # --- the state machine ----------------------------------------------------------------------

    def run(self) -> Plan:
        self.advance()
        self.account_gpu_seconds()
        return self.plan

    def advance(self) -> None:
        spec, status = self.society.spec, self.status
        # This status answers for this spec in every phase, finished and suspended ones too:
        # kstatus (Flux, kpt) and `kubectl wait` take a lagging observedGeneration as "in progress".
        status.observedGeneration = self.generation
        if finished(self.society):
            if self.observed.servers:
                self.stop_servers()
            return
        if status.phase == "Succeeded":  # finetune.iterations was raised: the run goes on
            status.completionTime = None
        if status.startTime is None:
            status.startTime = self.now
        deadline = spec.activeDeadlineSeconds
        if deadline and (self.now - status.startTime).total_seconds() > deadline:
            self.fail(
                "DeadlineExceeded", f"the run took longer than activeDeadlineSeconds ({deadline} s)"
            )
            return
        claim = build_claim(self.society, self.settings)
        if claim is not None and not self.observed.claim:
            self.plan.create.append(claim)
        status.children.claim = claim_name(self.society)
        if spec.suspend:
            self.suspend()
            return
        for name, job in self.observed.jobs.items():
            if job.phase == "suspended" and not spec.queueName:  # ours, from an earlier suspend
                self.plan.suspend_jobs[name] = False
        self.iterate(status.iteration)

    def suspend(self) -> None:
        for name, server in self.observed.servers.items():
            if server.replicas:
                self.plan.scale[name] = 0
                if self.status.phase != "Suspended":  # not booked by an earlier call
                    self.settle_gpu_seconds(server)
        for name, job in self.observed.jobs.items():
            if job.phase in ("pending", "running"):
                self.plan.suspend_jobs[name] = True
        self.phase(
            "Suspended",
            "Suspended",
            "spec.suspend is true: servers scaled to zero, "
            "Jobs suspended; set it to false to resume where the run stopped",
        )

    def iterate(self, i: int) -> None:
        job = self.debate(i)
        if job is None:
            return
        self.record(i, job)
        if i >= self.society.spec.finetune.iterations:
            self.stop_servers()
            self.status.children.debateJob = job.name
            self.phase("Succeeded", "Succeeded", f"finished {i} finetuning iterations")
            return
        if self.iteration_status(i).trainQuestions is None and job.message:
            # Evaluated only: i was the last iteration until finetune.iterations was raised.
            training = self.debate(i, training_only=True)
            if training is None:
                return
            self.record_training_split(i, training)
        self.train(i + 1)

    def debate(self, i: int, training_only: bool = False) -> ObservedJob | None:
        """Iteration i's debate Job (or, `training_only`, the one that debates its train split
        alone), once it succeeded and reported; None while it is still on its way."""
        debate, config = build_debate_job(self.society, self.settings, i, training_only)
        name = debate["metadata"]["name"]
        job = self.observed.jobs.get(name)
        if job is not None and job.phase in ("failed", "succeeded") and not self.reported(job):
            return None  # the verdict is in, the message its pod reported not yet
        if job is not None and job.phase == "failed":
            self.job_failed(job)
            return None
        if job is not None and job.phase == "succeeded":
            return job
        self.status.children.debateJob = name if job else None
        self.status.children.trainingJobs = []
        ready = self.ensure_servers(i)
        if self.status.phase == "Failed":
            return None
        if ready is None and job is None:
            self.phase("Serving", "ServersStarting", f"iteration {i}: waiting for the servers")
            return None
        if job is None:
            self.plan.create.append(debate)
            self.status.children.debateJob = name
        elif self.check_job_start(job):
            return None
        self.iteration_status(i)
        sizes = {"eval": config.task.eval_size, "train": config.task.train_size}
        names = {"eval": "evaluation", "train": "training"}
        problems = " and ".join(f"{sizes[s]} {names[s]} problems" for s in config.splits)
        why = " (finetune.iterations was raised)" if training_only else ""
        self.phase("Debating", "Debating", f"iteration {i}: debating {problems}{why}")
        return None

    def reported(self, job: ObservedJob) -> bool:
        """Whether a finished Job's termination message is in, or will not come any more."""
        waited = (self.now - (job.finished or self.now)).total_seconds()
        return job.message is not None or waited > RESULTS_GRACE_SECONDS

    def record_training_split(self, i: int, job: ObservedJob) -> None:
        entry = self.iteration_status(i)
        summary = _summary(job.message)
        entry.trainQuestions = (summary.get("train") or {}).get("questions", 0)
        entry.datasets = [DatasetSize(**d) for d in summary.get("datasets") or []]

    def record(self, i: int, job: ObservedJob) -> None:
        entry = self.iteration_status(i)
        if entry.completionTime is not None:
            return
        if job.message is None:
            self.plan.events.append(
                Event(
                    "ResultsMissing",
                    f"Job {job.name} succeeded but no pod of it reported a termination message; "
                    f"iteration {i}'s results are unknown (its summary is on the artifact volume)",
                    "Warning",
                )
            )
        summary = _summary(job.message)
        evaluation = summary.get("eval") or {}
        entry.accuracy = evaluation.get("accuracy")
        entry.accuracyStderr = evaluation.get("accuracyStderr")
        entry.evalQuestions = evaluation.get("questions")
        entry.consensus = evaluation.get("consensus")
        entry.diversity = evaluation.get("diversity")
        entry.diversityMethod = evaluation.get("diversityMethod")
        entry.datasets = [DatasetSize(**d) for d in summary.get("datasets") or []]
        entry.trainQuestions = (summary.get("train") or {}).get("questions")
        entry.completionTime = self.now
        self.status.accuracy = entry.accuracy
        accuracy = "unknown" if entry.accuracy is None else f"{entry.accuracy:.3f}"
        self.plan.events.append(Event("IterationEvaluated", f"iteration {i}: accuracy {accuracy}"))

    def train(self, target: int) -> None:
        self.stop_servers()  # the GPUs go to training
        jobs = build_training_jobs(self.society, self.settings, target)
        names = [job["metadata"]["name"] for job, _ in jobs]
        self.status.children.trainingJobs = names
        done = 0
        for job, _ in jobs:
            seen = self.observed.jobs.get(job["metadata"]["name"])
            if seen is None:
                self.plan.create.append(job)
            elif seen.phase == "failed" and self.reported(seen):
                self.job_failed(seen)
                return
            elif self.check_job_start(seen):
                return
            elif seen.phase == "succeeded":
                done += 1
        if done == len(jobs):
            self.status.iteration = target
            self.plan.events.append(
                Event("IterationTrained", f"trained the {len(jobs)} models of iteration {target}")
            )
            self.iterate(target)
            return
        self.phase(
            "Training", "Training", f"iteration {target}: {done} of {len(jobs)} models trained"
        )


def _summary(message: str | None) -> dict[str, Any]:
    try:
        summary = json.loads(message or "")
    except json.JSONDecodeError:
        return {}
    return summary if isinstance(summary, dict) else {}


def _reported_error(message: str | None) -> str | None:
    """What the step said when it failed: its JSON error, or the log tail the kubelet kept."""
    if not message:
        return None
    error = _summary(message).get("error")
    return str(error) if error else message.strip().splitlines()[-1][:500]


def finished(society: Society) -> bool:
    """Failed, or Succeeded with no iteration left: Succeeded is final only until
    finetune.iterations is raised."""
    status = society.status or SocietyStatus()
    return status.phase == "Failed" or (
        status.phase == "Succeeded" and status.iteration >= society.spec.finetune.iterations
    )


def reconcile(society: Society, observed: Observed, settings: Settings, now: datetime) -> Plan:
    return _Run(society, observed, settings, now).run()
