"""The Society state machine, as a pure function: (Society, observed children, now) -> Plan.

Level-triggered: every call recomputes what should exist from the status it recorded and what
it observes, so a missed event, a duplicate event or an operator restart at any instant leads
to the same end state. Each iteration i (status.iteration) goes through these stages; what the
status has recorded says which one is current (`stage`), and one table dispatches on it:

    debate       the servers of iteration i start and become ready (phase Serving), then its
                 debate Job runs (Debating); its result is recorded in status.iterations[i]
    train-split  only when finetune.iterations was raised after i was evaluated as the last:
                 a second debate Job debates i's train split, to train one more iteration
    train        (i < L) the servers go away (GPUs freed) and the Jobs that train iteration
                 i+1 run (Training); when all have succeeded, status.iteration becomes i+1
    done         (i = L) Succeeded

A stage that completes hands over to the next in the same call. Failed: a Job failed past its
backoffLimit or reported an unreadable result, a server or pod never started within
startupDeadlineSeconds, or activeDeadlineSeconds passed; each deadline check returns a
`Failure` or None.

Suspended (spec.suspend) deletes nothing: servers scale to zero, running Jobs are suspended (their
pods stop; a debate resumes from its transcript, a training step from its checkpoint), and no new
Job starts. With spec.queueName Kueue owns the Jobs' spec.suspend: their Workloads are
deactivated instead (Kueue evicts and suspends each Job until it is reactivated on resume).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from society_trainer.results import DebateResult

from ..api import Society
from ..api.status import IterationStatus, Phase, SocietyStatus
from ..build.desired import Desired, desired
from ..build.steps import debate_splits
from ..settings import Settings
from .failures import (
    Failure,
    active_deadline,
    claim_binding,
    claim_lost,
    job_failure,
    job_startup,
    server_startup,
)
from .observed import Observed, ObservedJob, ObservedServer
from .plan import Event, Plan
from .results import Missing, read_debate, record_evaluation, record_train_split
from .status import is_final, set_condition, set_phase

# The pod that carries a Job's termination message and the Job's verdict arrive on different
# watches, so the verdict may come first; a result still missing after this long is lost.
RESULTS_GRACE_SECONDS = 60

Stage = Literal["debate", "train-split", "train", "done"]


class _Reconcile:
    """One reconcile call's working state."""

    def __init__(self, society: Society, observed: Observed, settings: Settings, now: datetime):
        self.society, self.observed, self.settings, self.now = society, observed, settings, now
        self.spec = society.spec
        # A copy to change: through pydantic-core (dump, validate) rather than copy.deepcopy,
        # which took a third of a reconcile that changed nothing (a copy per child event).
        status = society.status or SocietyStatus()
        self.plan = Plan(status=SocietyStatus.model_validate(status.model_dump()))
        self.status = self.plan.status
        self.generation = society.metadata.generation
        self._desired: dict[int, Desired] = {}

    def desired(self, iteration: int) -> Desired:
        if iteration not in self._desired:
            self._desired[iteration] = desired(self.society, self.settings, iteration)
        return self._desired[iteration]

    # --- status -------------------------------------------------------------------------------

    def phase(self, phase: Phase, reason: str, message: str, job: str | None = None) -> None:
        if self.status.phase != phase:
            kind = "Warning" if phase == "Failed" else "Normal"
            self.plan.say(Event(reason, message, kind, job))
        set_phase(self.status, phase, reason, message, self.generation, self.now)

    def fail(self, failure: Failure) -> None:
        self.stop_servers()
        if self.status.phase != "Failed":
            self.plan.events.append(
                Event(failure.reason, failure.message, "Warning", failure.job, failure.role)
            )
        set_phase(self.status, "Failed", failure.reason, failure.message, self.generation, self.now)

    def degrade(self, reason: str, message: str) -> None:
        """Say, in a condition that stays for the rest of the run, that results are missing."""
        old = next((c for c in self.status.conditions if c.type == "Degraded"), None)
        if old is not None and old.status == "True" and message not in old.message:
            message = f"{old.message}; {message}"
        elif old is not None and old.status == "True":
            message = old.message
        set_condition(self.status, "Degraded", True, reason, message, self.generation, self.now)

    def iteration_status(self, iteration: int) -> IterationStatus:
        entry = self.recorded(iteration)
        if entry is None:
            entry = IterationStatus(iteration=iteration, startTime=self.now)
            self.status.iterations.append(entry)
        return entry

    def recorded(self, iteration: int) -> IterationStatus | None:
        return next((e for e in self.status.iterations if e.iteration == iteration), None)

    # --- the state machine --------------------------------------------------------------------

    def run(self) -> Plan:
        self.advance()
        self.account_gpu_seconds()
        return self.plan

    def advance(self) -> None:
        spec, status = self.spec, self.status
        # This status answers for this spec in every phase, finished and suspended ones too:
        # kstatus (Flux, kpt) and `kubectl wait` take a lagging observedGeneration as "in progress".
        status.observedGeneration = self.generation
        if is_final(self.society):
            if self.observed.servers:
                self.stop_servers()
            return
        if status.phase == "Succeeded":  # finetune.iterations was raised: the run goes on
            status.completionTime = None
        if status.startTime is None:
            status.startTime = self.now
        failure = active_deadline(self.spec, status, self.now)
        if failure is not None:
            self.fail(failure)
            return
        failure = self.ensure_claim()
        if failure is not None:
            self.fail(failure)
            return
        if spec.suspend:
            self.suspend()
            return
        for name, job in self.observed.jobs.items():
            if job.phase == "suspended" and not spec.queueName:  # ours, from an earlier suspend
                self.plan.suspend_jobs[name] = False
            elif spec.queueName and status.phase == "Suspended":  # resuming: every Workload,
                self.plan.queue_active[name] = True  # as a Job may finish while deactivated
        stages = {
            "debate": self.debate,
            "train-split": self.debate_train_split,
            "train": self.train,
            "done": self.succeed,
        }
        while stages[self.stage(status.iteration)](status.iteration):
            pass

    def ensure_claim(self) -> Failure | None:
        """Create the operator's artifact claim before anything else; once the run has begun
        (an iteration is recorded), a missing claim was deleted and is not made anew."""
        desired = self.desired(self.status.iteration)
        self.status.children.claim = desired.claim_name
        if desired.claim is None:  # the Society names its own claim
            return None
        if not self.observed.claim:
            if self.status.iterations:
                return claim_lost(desired.claim_name)
            self.plan.create.append(desired.claim)
            return None
        return claim_binding(
            self.spec, desired.claim_name, self.observed.claim_pending_since, self.now
        )

    def stage(self, i: int) -> Stage:
        """Where iteration i stands, from what the status has recorded."""
        entry = self.recorded(i)
        if entry is None or entry.completionTime is None:
            return "debate"
        if i >= self.spec.finetune.iterations:
            return "done"
        # Evaluated only (it was the last iteration until finetune.iterations was raised): its
        # train split is still to debate. Not when its results never arrived: train on.
        if entry.trainQuestions is None and entry.evalQuestions is not None:
            return "train-split"
        return "train"

    def suspend(self) -> None:
        for name, server in self.observed.servers.items():
            if server.replicas:
                self.plan.scale[name] = 0
                if self.status.phase != "Suspended":  # not booked by an earlier call
                    self.settle_gpu_seconds(server)
        for name, job in self.observed.jobs.items():
            if self.spec.queueName and not job.done:  # Kueue stops it, and keeps it stopped
                self.plan.queue_active[name] = False
            elif job.phase in ("pending", "running"):
                self.plan.suspend_jobs[name] = True
        self.phase(
            "Suspended",
            "Suspended",
            "spec.suspend is true: servers scaled to zero, "
            "Jobs suspended; set it to false to resume where the run stopped",
        )

    # --- stages: each returns True when it completed, so the next one starts now --------------

    def debate(self, i: int) -> bool:
        job = self.finished_debate(i, training_only=False)
        if job is None:
            return False
        result = self.debate_result(i, job)
        if result is None and self.status.phase == "Failed":
            return False
        self.record_evaluation(i, result)
        return True

    def debate_train_split(self, i: int) -> bool:
        job = self.finished_debate(i, training_only=True)
        if job is None:
            return False
        result = self.debate_result(i, job)
        if result is None and self.status.phase == "Failed":
            return False
        record_train_split(self.iteration_status(i), result)
        return True

    def train(self, i: int) -> bool:
        """Train iteration i+1's models from iteration i's debate."""
        self.stop_servers()  # the GPUs go to training
        jobs = self.desired(i).training
        self.status.children.trainingJobs = [child.name for child in jobs]
        done = 0
        for child in jobs:
            seen = self.observed.jobs.get(child.name)
            if seen is None:
                self.plan.create.append(child)
                continue
            if seen.phase == "failed" and self.reported(seen):
                self.fail(job_failure(seen, child))
                return False
            failure = job_startup(self.spec, seen, child, self.now)
            if failure is not None:
                self.fail(failure)
                return False
            done += seen.phase == "succeeded"
        if done < len(jobs):
            self.phase(
                "Training", "Training", f"iteration {i + 1}: {done} of {len(jobs)} models trained"
            )
            return False
        self.status.iteration = i + 1
        self.plan.events.append(
            Event("IterationTrained", f"trained the {len(jobs)} models of iteration {i + 1}")
        )
        return True

    def succeed(self, i: int) -> bool:
        self.stop_servers()
        self.status.children.debateJob = self.desired(i).debate.name
        self.phase("Succeeded", "Succeeded", f"finished {i} finetuning iterations")
        return False

    # --- the debate ---------------------------------------------------------------------------

    def finished_debate(self, i: int, training_only: bool) -> ObservedJob | None:
        """Iteration i's debate Job (of its train split alone: `training_only`) once it succeeded
        and reported; None while it is on its way (servers starting, the Job running) or when it
        failed."""
        wanted = self.desired(i)
        child = wanted.train_split_debate if training_only else wanted.debate
        job = self.observed.jobs.get(child.name)
        if job is not None and job.done and not self.reported(job):
            return None  # the verdict is in, the message its pod reported not yet
        if job is not None and job.phase == "failed":
            self.fail(job_failure(job, child))
            return None
        if job is not None and job.phase == "succeeded":
            return job
        self.status.children.debateJob = child.name if job else None
        self.status.children.trainingJobs = []
        ready = self.ensure_servers(i)
        if self.status.phase == "Failed":
            return None
        if ready is None and job is None:
            waiting = f"iteration {i}: waiting for the servers"
            if self.observed.claim_pending_since is not None:
                waiting += f" and for artifact claim {self.status.children.claim} to bind"
            self.phase("Serving", "ServersStarting", waiting)
            return None
        if job is None:
            self.plan.create.append(child)
            self.status.children.debateJob = child.name
        else:
            failure = job_startup(self.spec, job, child, self.now)
            if failure is not None:
                self.fail(failure)
                return None
        self.iteration_status(i)
        # From the spec, not the Job's step config: building that at each event was a twentieth
        # of the event loop at 1000 Societies.
        sizes = {"eval": self.spec.task.evalSize, "train": self.spec.task.trainSize}
        names = {"eval": "evaluation", "train": "training"}
        splits = debate_splits(self.society, i, training_only)
        problems = " and ".join(f"{sizes[s]} {names[s]} problems" for s in splits)
        why = " (finetune.iterations was raised)" if training_only else ""
        self.phase("Debating", "Debating", f"iteration {i}: debating {problems}{why}")
        return None

    def reported(self, job: ObservedJob) -> bool:
        """Whether a finished Job's termination message is in, or will not come any more."""
        waited = (self.now - (job.finished_at or self.now)).total_seconds()
        return job.message is not None or waited > RESULTS_GRACE_SECONDS

    def debate_result(self, i: int, job: ObservedJob) -> DebateResult | None:
        """The succeeded debate's result; None if it never arrived (said in a Warning and the
        Degraded condition) or cannot be read (the run fails, naming the Job)."""
        result = read_debate(job, i)
        if isinstance(result, Failure):
            self.fail(result)
            return None
        if isinstance(result, Missing):
            self.plan.events.append(Event("ResultsMissing", result.message, "Warning"))
            self.degrade("ResultsMissing", result.message)
            return None
        return result

    def record_evaluation(self, i: int, result: DebateResult | None) -> None:
        entry = self.iteration_status(i)
        record_evaluation(entry, result, self.now)
        self.status.accuracy = entry.accuracy
        accuracy = "unknown" if entry.accuracy is None else f"{entry.accuracy:.3f}"
        self.plan.events.append(Event("IterationEvaluated", f"iteration {i}: accuracy {accuracy}"))

    # --- servers ------------------------------------------------------------------------------

    def stop_servers(self) -> None:
        for name, server in self.observed.servers.items():
            self.plan.delete.append(("Deployment", name))
            self.plan.delete.append(("Service", name))
            if name in self.status.children.servers:  # not yet stopped by an earlier call
                self.settle_gpu_seconds(server)
        self.status.children.servers = []

    def ensure_servers(self, iteration: int) -> list[ObservedServer] | None:
        """Create the servers of `iteration` (replacing another iteration's by delete and create);
        the ready ones, or None if some are not."""
        wanted = self.desired(iteration).servers
        for name in self.observed.servers.keys() - wanted.keys():
            self.plan.delete += [("Deployment", name), ("Service", name)]
        ready = []
        if wanted.keys() - self.observed.servers.keys():  # the API key, before its readers
            self.plan.create += self.desired(iteration).access
        for name, (deployment, service) in wanted.items():
            seen = self.observed.servers.get(name)
            if seen is None:
                self.plan.create += [deployment, service]
                continue
            if seen.iteration != iteration:  # left from another iteration: start afresh
                self.plan.delete += [("Deployment", name), ("Service", name)]
                continue
            if not seen.service:  # deleted by someone: the debate reaches the server through it
                self.plan.create.append(service)
            if seen.replicas == 0:  # scaled down by a suspend that has since been lifted
                self.plan.scale[name] = 1
            elif seen.ready:
                ready.append(seen)
            else:
                failure = server_startup(self.spec, seen, self.now)
                if failure is not None:
                    self.fail(failure)
        self.status.children.servers = sorted(wanted)
        return ready if len(ready) == len(wanted) else None

    # --- GPU-seconds ----------------------------------------------------------------------------

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


def reconcile(society: Society, observed: Observed, settings: Settings, now: datetime) -> Plan:
    return _Reconcile(society, observed, settings, now).run()
