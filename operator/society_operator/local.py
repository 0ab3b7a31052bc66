"""`society run`: a Society's whole lifecycle on this machine, decided by the operator's own logic.

The operator's `reconcile(society, observed, settings, now) -> Plan` says what comes next; here a
`LocalCluster` plays the cluster around it:
- a Deployment (a vLLM server) is ready as soon as it is created: no server runs, because each
  debate generates in-process with transformers (a `TransformersBackend` in its step config);
- a Job runs to completion as the same `society-trainer debate|finetune --config FILE` command its
  pod would run, in a subprocess, with the step config the builders put in its environment; only
  the backend, the base model's location and the termination-message path are changed;
- the step's termination message (its JSON summary, or `{"error": ...}`) comes back as the
  Job's, so results reach the status exactly as on a cluster.

Artifacts go under `<artifacts>/<society name>/` with the operator's own layout (`steps.Layout`).
Beside them, `society.json` holds the stored Society (spec and status, as the apiserver would)
and `jobs.json` the finished Jobs, so a run stopped at any point (Ctrl-C) continues where it
stopped when the same command runs again: finished steps are not rerun, and an interrupted step
resumes from its own transcript or checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from society_trainer.config import (
    STEP_CONFIG_ENV,
    DebateConfig,
    FinetuneConfig,
    TransformersBackend,
)

from .api import Society
from .api.immutable import changed_immutable_fields
from .api.status import SocietyStatus
from .builders import LABEL_ITERATION
from .reconciler import (
    Event,
    Observed,
    ObservedJob,
    ObservedServer,
    Plan,
    finished,
    reconcile,
)
from .settings import Settings

TRAINER = "society-trainer"
DONE = ("Succeeded", "Failed")


class LocalRunError(Exception):
    """Why a local run cannot start or go on; the message is one line for the user."""


@dataclass(frozen=True)
class JobRecord:
    """A finished Job, as jobs.json keeps it: what the reconciler observes, plus what the final
    table reports (which iteration and part of the loop it was, and how long it took)."""

    phase: str  # succeeded | failed
    message: str
    reason: str | None
    finished: str  # ISO 8601
    component: str  # debate | training
    iteration: int
    seconds: float

    def observed(self, name: str) -> ObservedJob:
        return ObservedJob(
            name=name,
            phase=self.phase,  # type: ignore[arg-type]
            message=self.message,
            reason=self.reason,
            finished=datetime.fromisoformat(self.finished),
        )


@dataclass
class Step:
    """One Job of a Plan, as a local subprocess: its command, its rewritten config, its files."""

    name: str
    command: list[str]  # the container's command, e.g. ["society-trainer", "debate"]
    config: DebateConfig | FinetuneConfig
    component: str
    iteration: int
    directory: Path  # <run>/jobs/<name>/: config.json, log.txt, termination-log

    @property
    def kind(self) -> str:
        return self.command[-1]

    @property
    def log(self) -> Path:
        return self.directory / "log.txt"

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"


class Progress:
    """What the executor reports as it goes. This one reports nothing; the CLI's draws bars."""

    def preparing(self, model: str) -> None:
        """The base model is being made available (a builtin one is built on first use)."""

    def prepared(self, model: str, seconds: float) -> None:
        pass

    def started(self, step: Step) -> None:
        pass

    def polled(self, step: Step | None) -> None:
        """Twice a second while a step (or, with None, the model's preparation) runs."""

    def finished(self, step: Step, record: JobRecord) -> None:
        pass

    def event(self, event: Event) -> None:
        pass


@dataclass
class LocalCluster:
    """The cluster as the reconciler sees it, kept on disk under one Society's run directory."""

    root: Path  # <artifacts>/<society name>
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    servers: dict[str, ObservedServer] = field(default_factory=dict)
    claim: bool = False

    @property
    def jobs_file(self) -> Path:
        return self.root / "jobs.json"

    @classmethod
    def load(cls, root: Path) -> LocalCluster:
        cluster = cls(root)
        if cluster.jobs_file.exists():
            saved = json.loads(cluster.jobs_file.read_text())
            cluster.jobs = {name: JobRecord(**record) for name, record in saved.items()}
        return cluster

    def save(self) -> None:
        jobs = {name: asdict(record) for name, record in self.jobs.items()}
        _write_atomically(self.jobs_file, json.dumps(jobs, indent=2) + "\n")

    def observed(self) -> Observed:
        return Observed(
            jobs={name: record.observed(name) for name, record in self.jobs.items()},
            servers=dict(self.servers),
            claim=self.claim,
        )

    def apply(self, plan: Plan, now: datetime) -> list[dict[str, Any]]:
        """Everything in the plan but its Jobs takes effect at once; the Jobs are returned."""
        for kind, name in plan.delete:
            if kind == "Deployment":
                self.servers.pop(name, None)
            elif kind == "Job":
                self.jobs.pop(name, None)
        for name, replicas in plan.scale.items():
            if name in self.servers:
                server = self.servers[name]
                self.servers[name] = ObservedServer(
                    name, server.iteration, replicas, bool(replicas), server.created
                )
        jobs = []
        for obj in plan.create:
            kind, meta = obj["kind"], obj["metadata"]
            if kind == "Deployment":
                iteration = int(meta["labels"][LABEL_ITERATION])
                replicas = obj["spec"]["replicas"]
                self.servers[meta["name"]] = ObservedServer(
                    meta["name"], iteration, replicas, bool(replicas), now
                )
            elif kind == "PersistentVolumeClaim":
                self.claim = True
            elif kind == "Job":
                jobs.append(obj)
        return jobs


def _write_atomically(path: Path, text: str) -> None:
    """A Ctrl-C mid-write must not leave a torn state file that the next run cannot read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


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
        (spec.training.gpus 0), where each step spends much of its time importing and loading
        and the cores are shared out; one at a time when they use GPUs (this machine's few)."""
        self.parallel = parallel or (1 if society.spec.training.gpus else sys.maxsize)
        self.artifacts = artifacts.resolve()
        self.settings = Settings(artifacts_mount=str(self.artifacts))
        self.root = self.artifacts / society.metadata.name
        self.society_file = self.root / "society.json"
        self.progress = progress or Progress()
        self.society = self._resume(society)
        self.cluster = LocalCluster.load(self.root)

    # --- state ----------------------------------------------------------------------------------

    def _resume(self, society: Society) -> Society:
        """The manifest's spec with the stored status. Immutable fields must match the stored
        spec (the apiserver enforces the same rule); a Failed run starts over from its failed
        step, which is what deleting the failed Job would do on a cluster."""
        society = society.model_copy(deep=True)
        society.metadata.namespace = society.metadata.namespace or "default"
        society.metadata.generation = 1
        if not self.society_file.exists():
            return society
        stored = json.loads(self.society_file.read_text())
        changed = changed_immutable_fields(stored.get("spec") or {}, society.to_manifest()["spec"])
        if changed:
            raise LocalRunError(
                f"{self.root} holds a run whose {', '.join(changed)} differed; these fields are "
                "immutable (a changed value would mix two experiments): use another --artifacts "
                "directory, or delete that one to start over"
            )
        status = SocietyStatus.model_validate(stored.get("status") or {})
        if status.phase == "Failed":
            status.phase, status.completionTime = None, None
        society.status = status
        return society

    def _save(self) -> None:
        _write_atomically(self.society_file, json.dumps(self.society.to_manifest(), indent=2))

    @property
    def status(self) -> SocietyStatus:
        return self.society.status or SocietyStatus()

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> SocietyStatus:
        self.root.mkdir(parents=True, exist_ok=True)
        self._forget_failed_jobs()
        if not finished(self.society):  # Succeeded runs go on when finetune.iterations is raised
            self.prepare_model()
        idle = 0
        while True:
            now = datetime.now(UTC)
            plan = reconcile(self.society, self.cluster.observed(), self.settings, now)
            self.society.status = plan.status
            self._save()
            for event in plan.events:
                self.progress.event(event)
            if plan.status.phase in DONE or plan.status.phase == "Suspended":
                self.cluster.apply(plan, now)
                return plan.status
            acted = bool(plan.create or plan.delete or plan.scale)
            self._run_steps([self.step(job) for job in self.cluster.apply(plan, now)])
            idle = 0 if acted else idle + 1
            if idle > 1:  # the reconciler waits for something no local step will bring
                condition = next((c for c in plan.status.conditions if c.status == "True"), None)
                raise LocalRunError(
                    f"the run is stuck in phase {plan.status.phase}"
                    + (f": {condition.message}" if condition else "")
                )

    def prepare_model(self) -> None:
        """Make the base model available before the first step, so that building a builtin
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
        """A rerun after a failure retries the failed step (it resumes from its artifacts)."""
        failed = [name for name, record in self.cluster.jobs.items() if record.phase == "failed"]
        for name in failed:
            del self.cluster.jobs[name]
        if failed:
            self.cluster.save()

    # --- one Job ----------------------------------------------------------------------------------

    def step(self, job: dict[str, Any]) -> Step:
        """The Job as a local step: its command, and its config pointed at this machine."""
        meta = job["metadata"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        command = list(container["command"])
        directory = self.root / "jobs" / meta["name"]
        model = self._base_model()
        if command[-1] == "debate":
            config: DebateConfig | FinetuneConfig = DebateConfig.model_validate_json(
                env[STEP_CONFIG_ENV]
            )
            backend = TransformersBackend(
                base_model=Path(model),
                base_model_revision=self.society.spec.model.revision,
                batch_size=self.society.spec.debate.concurrency,
                dtype=self.society.spec.model.dtype,
                device="auto",  # the GPU if this machine has one
            )
            config = config.model_copy(
                update={"backend": backend, "termination_log": directory / "termination-log"}
            )
        elif command[-1] == "finetune":
            config = FinetuneConfig.model_validate_json(env[STEP_CONFIG_ENV])
            config = config.model_copy(
                update={
                    "model": config.model.model_copy(update={"base_model": model}),
                    "termination_log": directory / "termination-log",
                }
            )
        else:
            raise LocalRunError(f"Job {meta['name']} runs {command}, which has no local step")
        return Step(
            name=meta["name"],
            command=command,
            config=config,
            component=meta["labels"]["app.kubernetes.io/component"],
            iteration=int(meta["labels"][LABEL_ITERATION]),
            directory=directory,
        )

    def _base_model(self) -> str:
        """A path is a path on this machine (on a cluster: on the artifact volume); a Hub id or
        builtin name is passed on as it is, for the step to resolve."""
        name = self.society.spec.model.name
        if name.startswith(("/", ".", "~")):
            return str(Path(name).expanduser().resolve())
        return name

    def _run_steps(self, steps: list[Step]) -> None:
        """A plan's Jobs (an iteration's training steps) run side by side, `parallel` at a
        time, as a cluster runs them; each is recorded as it finishes, so Ctrl-C loses none."""
        if self.parallel <= 1 or len(steps) < 2:
            for step in steps:
                self.progress.started(step)
                self._record(step, *self._execute(step, lambda s=step: self.progress.polled(s)))
            return
        at_once = min(self.parallel, len(steps))
        # Each step gets its share of the cores: oversubscribed torch threads wait on each other.
        threads = max(1, (os.cpu_count() or 1) // at_once)
        stop = threading.Event()

        def check() -> None:
            if stop.is_set():
                raise _Stopped

        with ThreadPoolExecutor(at_once) as pool:
            running = {}
            for step in steps:
                self.progress.started(step)
                running[pool.submit(self._execute, step, check, threads)] = step
            try:
                while running:
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._record(running.pop(future), *future.result())
                    for step in running.values():
                        self.progress.polled(step)
            except BaseException:
                stop.set()  # each worker stops its step, then the pool's exit waits for them
                raise

    def _execute(
        self, step: Step, poll: Callable[[], None], threads: int | None = None
    ) -> tuple[int, float]:
        """Run one step's command; its exit code and how long it took."""
        step.directory.mkdir(parents=True, exist_ok=True)
        (step.directory / "config.json").write_text(step.config.model_dump_json(indent=2) + "\n")
        step.termination_log.unlink(missing_ok=True)
        started = time.monotonic()
        returncode = run_command(
            [trainer_executable(), step.kind, "--config", str(step.directory / "config.json")],
            step.log,
            poll,
            threads,
        )
        return returncode, time.monotonic() - started

    def _record(self, step: Step, returncode: int, seconds: float) -> None:
        record = JobRecord(
            phase="succeeded" if returncode == 0 else "failed",
            message=_termination_message(step),
            reason=None if returncode == 0 else f"exit code {returncode}",
            finished=datetime.now(UTC).isoformat(),
            component=step.component,
            iteration=step.iteration,
            seconds=round(seconds, 1),
        )
        self.cluster.jobs[step.name] = record
        self.cluster.save()
        self.progress.finished(step, record)


def trainer_executable() -> str:
    """`society-trainer` beside this interpreter (a virtual environment), else on PATH."""
    found = shutil.which(TRAINER, path=str(Path(sys.executable).parent)) or shutil.which(TRAINER)
    if found is None:
        raise LocalRunError(
            f"{TRAINER} not found: `society run` needs the trainer installed "
            "(pip install 'society-operator[trainer]')"
        )
    return found


class _Stopped(Exception):
    """A step stopped because another part of the run was interrupted."""


def run_command(
    command: list[str], log: Path, poll: Callable[[], None], threads: int | None = None
) -> int:
    """Run `command` with its output in `log`, calling `poll` twice a second, with at most
    `threads` torch threads (unless OMP_NUM_THREADS says otherwise). On Ctrl-C, or an exception
    from `poll`, the step is interrupted too (it resumes from its artifacts next time) and the
    exception goes on."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env
        )
        try:
            while process.poll() is None:
                poll()
                time.sleep(0.5)
        except BaseException:
            _stop(process)
            raise
    poll()
    return process.returncode


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _termination_message(step: Step) -> str:
    """What the kubelet would report: the file the step wrote, else the log's tail
    (terminationMessagePolicy FallbackToLogsOnError keeps its last 2048 bytes)."""
    if step.termination_log.exists() and step.termination_log.read_text().strip():
        return step.termination_log.read_text()
    if step.log.exists():
        return step.log.read_bytes()[-2048:].decode(errors="replace")
    return ""


def debated_questions(step: Step) -> Iterator[int]:
    """Questions a debate step has finished so far, per split (lines of its transcripts)."""
    config = step.config
    assert isinstance(config, DebateConfig)
    for split in config.splits:
        transcript = config.output_dir / split / "transcript.jsonl"
        yield sum(1 for _ in transcript.open("rb")) if transcript.exists() else 0
