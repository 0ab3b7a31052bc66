"""One Job of a Plan as a local process: the command its container would run, with the step
config `build` made for it, pointed at this machine.

Three things change from the pod's config: the debate's backend (a `TransformersBackend` on the
base model instead of vLLM servers), the base model's location (a path is a path on this
machine, not on the artifact volume), and the termination-message path
(`jobs/<name>/termination-log`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from society_trainer.config import DebateConfig, FinetuneConfig, TransformersBackend

from ..api import Society
from ..build.child import Child, StepConfig
from ..build.names import LABEL_COMPONENT, LABEL_ITERATION
from .process import LocalRunError


@dataclass
class LocalJob:
    name: str
    command: list[str]  # the container's command, e.g. ["society-trainer", "debate"]
    config: StepConfig
    component: str  # debate | training
    iteration: int
    directory: Path  # <run>/jobs/<name>/: config.json, log.txt, termination-log

    @property
    def kind(self) -> str:
        """debate or finetune: the `society-trainer` subcommand."""
        return self.command[-1]

    @property
    def log(self) -> Path:
        return self.directory / "log.txt"

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"

    def termination_message(self) -> str:
        """What the kubelet would report: the file the step wrote, else the log's tail
        (terminationMessagePolicy FallbackToLogsOnError keeps its last 2048 bytes)."""
        if self.termination_log.exists() and self.termination_log.read_text().strip():
            return self.termination_log.read_text()
        if self.log.exists():
            return self.log.read_bytes()[-2048:].decode(errors="replace")
        return ""

    def debated_questions(self) -> Iterator[int]:
        """Questions a debate has finished so far, per split (lines of its transcripts)."""
        config = self.config
        assert isinstance(config, DebateConfig)
        for split in config.splits:
            transcript = config.output_dir / split / "transcript.jsonl"
            yield sum(1 for _ in transcript.open("rb")) if transcript.exists() else 0


def local_job(child: Child, society: Society, base_model: str, jobs_dir: Path) -> LocalJob:
    """The Plan's Job as a local process, its config pointed at this machine."""
    container = child.body["spec"]["template"]["spec"]["containers"][0]
    directory = jobs_dir / child.name
    config = child.config
    termination_log = directory / "termination-log"
    if isinstance(config, DebateConfig):
        backend = TransformersBackend(
            base_model=Path(base_model),
            base_model_revision=society.spec.model.revision,
            batch_size=society.spec.debate.concurrency,
            dtype=society.spec.model.dtype,
            device="auto",  # the GPU if this machine has one
        )
        config = config.model_copy(update={"backend": backend, "termination_log": termination_log})
    elif isinstance(config, FinetuneConfig):
        model = config.model.model_copy(update={"base_model": base_model})
        config = config.model_copy(update={"model": model, "termination_log": termination_log})
    else:
        raise LocalRunError(f"Job {child.name} has no step config to run locally")
    return LocalJob(
        name=child.name,
        command=list(container["command"]),
        config=config,
        component=child.labels[LABEL_COMPONENT],
        iteration=int(child.labels[LABEL_ITERATION]),
        directory=directory,
    )
