"""The loop of `society run`: the operator's `reconcile` says what comes next, the local cluster
(cluster.py) plays the apiserver around it, and each Job of a Plan runs as the same
`society-trainer debate|finetune --config FILE` command its pod would run (jobs.py).

Artifacts go under `<artifacts>/<society name>/` with the operator's own layout
(`build.steps.Layout`). Beside them, `society.json` holds the stored Society (spec and status,
as the apiserver would) and `jobs.json` the finished Jobs, so a run stopped at any point
(Ctrl-C) continues where it stopped when the same command runs again: finished Jobs are not
rerun, and an interrupted one resumes from its own transcript or checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

from ..api import Society
from ..api.immutable import changed_immutable_fields
from ..api.status import SocietyStatus
from ..build.child import Child
from ..core.plan import Event
from ..core.reconciler import reconcile
from ..core.status import FINAL_PHASES, is_final, retry_failed
from ..settings import Settings
from .cluster import LocalCluster
from .jobs import LocalJob, local_job
from .process import LocalRunError, local_embedding_model, run_command, trainer_executable
from .records import JobRecord, read_state, write_atomically


class Progress:
    """What the runner reports as it goes. This one reports nothing; the CLI's draws bars."""

    def preparing(self, model: str) -> None:
        """The base model is being made available (a builtin one is built on first use)."""

    def prepared(self, model: str, seconds: float) -> None:
        pass

    def started(self, job: LocalJob) -> None:
        pass

    def polled(self, job: LocalJob | None) -> None:
        """Twice a second while a Job (or, with None, the model's preparation) runs."""

    def job_done(self, job: LocalJob, record: JobRecord) -> None:
        pass

    def event(self, event: Event) -> None:
        pass


class LocalRun:
    """Runs one Society to Succeeded or Failed, persisting after every change."""

    def __init__(
        self,
        society: Society,
        artifacts: Path,
        progress: Progress | None = None,
        parallel: int | None = None,
    ):
        """`parallel`: how many of a plan's Jobs run at once. None: all of them for a CPU run
        (spec.training.gpus 0), where each Job spends much of its time importing and loading
        and the cores are shared out; one at a time when they use GPUs (this machine's few)."""
        self.parallel = parallel or (1 if society.spec.training.gpus else sys.maxsize)
        self.artifacts = artifacts.resolve()
        self.settings = Settings(
            artifacts_mount=str(self.artifacts), embedding_model=local_embedding_model()
        )
        self.root = self.artifacts / society.metadata.name
        self.society_file = self.root / "society.json"
        self.progress = progress or Progress()
        self.society = self._resume(society)
        self.cluster = LocalCluster.load(self.root)

    # --- state ----------------------------------------------------------------------------------

    def _resume(self, society: Society) -> Society:
        """The manifest's spec with the stored status. Immutable fields must match the stored
        spec (the apiserver enforces the same rule); a Failed run starts over from its failed
        Job, which is what deleting the failed Job would do on a cluster."""
        society = society.model_copy(deep=True)
        society.metadata.namespace = society.metadata.namespace or "default"
        society.metadata.generation = 1
        if not self.society_file.exists():
            return society
        stored = read_state(self.society_file)
        if not isinstance(stored.get("spec"), dict):
            raise LocalRunError(f"{self.society_file}: not a stored Society (no spec)")
        changed = changed_immutable_fields(stored.get("spec") or {}, society.to_manifest()["spec"])
        if changed:
            raise LocalRunError(
                f"{self.root} holds a run whose {', '.join(changed)} differed; these fields are "
                "immutable (a changed value would mix two experiments): use another --artifacts "
                "directory, or delete that one to start over"
            )
        try:
            status = SocietyStatus.model_validate(stored.get("status") or {})
        except ValueError as error:
            first = " ".join(str(error).split())[:300]
            raise LocalRunError(
                f"{self.society_file}: its status cannot be read ({first})"
            ) from None
        society.status = retry_failed(status)
        return society

    def _save(self) -> None:
        write_atomically(self.society_file, json.dumps(self.society.to_manifest(), indent=2))

    @property
    def status(self) -> SocietyStatus:
        return self.society.status or SocietyStatus()

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> SocietyStatus:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._only_run():
            return self._run()

    @contextlib.contextmanager
    def _only_run(self) -> Iterator[None]:
        """One `society run` at a time per run directory: two would run the same steps into
        the same files. The lock goes with the process, however it ends."""
        with (self.root / ".lock").open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise LocalRunError(
                    f"{self.root} is in use by another `society run` ({holder}); wait for it to "
                    "finish or stop it (Ctrl-C), or use another --artifacts directory"
                ) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()}")
            lock.flush()
            yield

    def _run(self) -> SocietyStatus:
        self._forget_failed_jobs()
        if not is_final(self.society):  # Succeeded runs go on when finetune.iterations is raised
            self.prepare_model()
        idle = 0
        while True:
            now = datetime.now(UTC)
            plan = reconcile(self.society, self.cluster.observed(), self.settings, now)
            self.society.status = plan.status
            self._save()
            for event in plan.events:
                self.progress.event(event)
            if plan.status.phase in FINAL_PHASES or plan.status.phase == "Suspended":
                self.cluster.apply(plan, now)
                return plan.status
            acted = bool(plan.create or plan.delete or plan.scale)
            self._run_jobs([self._local(child) for child in self.cluster.apply(plan, now)])
            idle = 0 if acted else idle + 1
            if idle > 1:  # the reconciler waits for something no local Job will bring
                condition = next((c for c in plan.status.conditions if c.status == "True"), None)
                raise LocalRunError(
                    f"the run is stuck in phase {plan.status.phase}"
                    + (f": {condition.message}" if condition else "")
                )

    def prepare_model(self) -> None:
        """Make the base model available before the first Job, so that building a builtin
        model shows as such and an unknown name fails at once, not inside the first debate."""
        model = self._base_model()
        self.progress.preparing(model)
        log = self.root / "model-log.txt"
        log.unlink(missing_ok=True)
        started = time.monotonic()
        returncode = run_command(
            [trainer_executable(), "model", model, "--revision", self.society.spec.model.revision],
            log,
            lambda: self.progress.polled(None),
        )
        self.progress.prepared(model, time.monotonic() - started)
        if returncode != 0:
            lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
            reason = next((line for line in reversed(lines) if "society-trainer:" in line), None)
            raise LocalRunError(
                (reason or lines[-1]).removeprefix("society-trainer: ") + f" (log: {log})"
            )

    def failed_logs(self) -> list[Path]:
        return [
            self.root / "jobs" / name / "log.txt"
            for name, record in self.cluster.jobs.items()
            if record.phase == "failed"
        ]

    def _forget_failed_jobs(self) -> None:
        """A rerun after a failure retries the failed Job (it resumes from its artifacts)."""
        failed = [name for name, record in self.cluster.jobs.items() if record.phase == "failed"]
        for name in failed:
            del self.cluster.jobs[name]
        if failed:
            self.cluster.save()

    # --- Jobs -----------------------------------------------------------------------------------

    def _local(self, child: Child) -> LocalJob:
        return local_job(child, self.society, self._base_model(), self.root / "jobs")

    def _base_model(self) -> str:
        """A path is a path on this machine (on a cluster: on the artifact volume); a Hub id or
        builtin name is passed on as it is, for the step to resolve."""
        name = self.society.spec.model.name
        if name.startswith(("/", ".", "~")):
            return str(Path(name).expanduser().resolve())
        return name

    def _run_jobs(self, jobs: list[LocalJob]) -> None:
        """A plan's Jobs (an iteration's training Jobs) run side by side, `parallel` at a
        time, as a cluster runs them; each is recorded as it finishes, so Ctrl-C loses none."""
        if self.parallel <= 1 or len(jobs) < 2:
            for job in jobs:
                self.progress.started(job)
                self._record(job, *self._execute(job, lambda j=job: self.progress.polled(j)))
            return
        at_once = min(self.parallel, len(jobs))
        # Each Job gets its share of the cores: oversubscribed torch threads wait on each other.
        threads = max(1, (os.cpu_count() or 1) // at_once)
        stop = threading.Event()

        def check() -> None:
            if stop.is_set():
                raise _Stopped

        with ThreadPoolExecutor(at_once) as pool:
            running = {}
            for job in jobs:
                self.progress.started(job)
                running[pool.submit(self._execute, job, check, threads)] = job
            try:
                while running:
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._record(running.pop(future), *future.result())
                    for job in running.values():
                        self.progress.polled(job)
            except BaseException:
                stop.set()  # each worker stops its Job, then the pool's exit waits for them
                raise

    def _execute(
        self, job: LocalJob, poll: Callable[[], None], threads: int | None = None
    ) -> tuple[int, float]:
        """Run one Job's command; its exit code and how long it took."""
        job.directory.mkdir(parents=True, exist_ok=True)
        (job.directory / "config.json").write_text(job.config.model_dump_json(indent=2) + "\n")
        job.termination_log.unlink(missing_ok=True)
        started = time.monotonic()
        returncode = run_command(
            [trainer_executable(), job.kind, "--config", str(job.directory / "config.json")],
            job.log,
            poll,
            threads,
        )
        return returncode, time.monotonic() - started

    def _record(self, job: LocalJob, returncode: int, seconds: float) -> None:
        record = JobRecord(
            phase="succeeded" if returncode == 0 else "failed",
            message=job.termination_message(),
            reason=None if returncode == 0 else f"exit code {returncode}",
            finished_at=datetime.now(UTC).isoformat(),
            component=job.component,
            iteration=job.iteration,
            seconds=round(seconds, 1),
        )
        self.cluster.jobs[job.name] = record
        self.cluster.save()
        self.progress.job_done(job, record)


class _Stopped(Exception):
    """A Job stopped because another part of the run was interrupted."""
