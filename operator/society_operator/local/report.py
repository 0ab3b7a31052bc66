"""What `society run` shows: progress bars while it runs, and a table of iterations at the end.

Bars and step lines go to stderr (bars only on a terminal); the table goes to stdout, so that
`society run FILE > results.txt` keeps just the results.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from datetime import datetime

from society_trainer.results import DebateResult, FinetuneResult, ResultError, read_result

from ..api.status import IterationStatus, SocietyStatus
from ..core.plan import Event
from .jobs import LocalJob
from .records import JobRecord
from .runner import Progress

COLUMNS = (
    "iteration",
    "accuracy %",
    "consensus",
    "diversity",
    "generation data",
    "critic data",
    "time",
)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def job_line(job: LocalJob, record: JobRecord) -> str:
    """One line per finished Job: what it produced, in the words of its result."""
    took = _duration(record.seconds)
    if record.phase != "succeeded":
        return f"{job.name}: failed after {took}"
    kind = DebateResult if job.kind == "debate" else FinetuneResult
    try:
        result = read_result(record.message, kind)
    except ResultError as error:
        return f"{job.name}: its result cannot be read ({error}) ({took})"
    if isinstance(result, DebateResult):
        evaluation = result.eval
        accuracy = (
            ""
            if evaluation is None
            else (f": accuracy {evaluation.accuracy:.1%} ± {evaluation.accuracyStderr:.1%}")
        )
        return f"{job.name}{accuracy} ({took})"
    if not isinstance(result, FinetuneResult):  # an error report from a Job that succeeded
        return f"{job.name}: {result.error} ({took})"
    if result.carriedForward:
        return f"{job.name}: no examples, previous weights carried forward ({took})"
    loss = ""
    if result.firstLoss is not None and result.finalLoss is not None:
        loss = f", loss {result.firstLoss:.3f} -> {result.finalLoss:.3f}"
    return f"{job.name}: {result.examples} examples{loss} ({took})"


class TerminalProgress(Progress):
    """tqdm bars on stderr: questions debated for a debate, elapsed time for the rest (one bar
    for the training Jobs that run side by side)."""

    def __init__(self) -> None:
        from tqdm import tqdm  # the trainer's dependency; `society run` needs the trainer anyway

        self._tqdm = tqdm
        self._bar = None
        self._training: list[str] = []  # the steps the elapsed-time bar stands for

    def _open(self, desc: str, total: int | None = None, initial: int = 0, unit: str = "it"):
        self._close()
        if total is None:
            format_ = "{desc}: {elapsed}"
        else:
            format_ = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}]"
        self._bar = self._tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            bar_format=format_,
            file=sys.stderr,
            disable=None,  # no bars without a terminal; the step lines still print
            leave=False,
        )

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stderr)

    def preparing(self, model: str) -> None:
        self._open(f"base model {model} (a builtin one is built on first use)")

    def prepared(self, model: str, seconds: float) -> None:
        self._close()
        self._line(f"base model {model} ready ({_duration(seconds)})")

    def started(self, job: LocalJob) -> None:
        if job.kind == "debate":
            total = sum(
                job.config.task.eval_size if split == "eval" else job.config.task.train_size
                for split in job.config.splits
            )
            done = sum(job.debated_questions())
            splits = " + ".join(job.config.splits)
            self._open(f"{job.name} ({splits})", total, done, "questions")
        elif self._training and self._bar is not None:
            self._training.append(job.name)
            self._bar.set_description_str(self._training_description())
        else:
            self._training = [job.name]
            self._open(self._training_description())

    def _training_description(self) -> str:
        first, others = self._training[0], len(self._training) - 1
        return f"{first} and {others} more" if others else first

    def polled(self, job: LocalJob | None) -> None:
        if self._bar is None:
            return
        if job is not None and job.kind == "debate":
            self._bar.n = sum(job.debated_questions())
        self._bar.refresh()

    def job_done(self, job: LocalJob, record: JobRecord) -> None:
        if job.name in self._training:
            self._training.remove(job.name)
        if self._training and self._bar is not None:
            self._bar.set_description_str(self._training_description())
        else:
            self._close()
        self._line(job_line(job, record))

    def event(self, event: Event) -> None:
        if event.type == "Warning":
            self._close()
            self._line(f"warning: {event.message}")


def _sizes(entry: IterationStatus, role: str) -> str:
    sizes = sorted((d.agent, d.examples) for d in entry.datasets if d.role == role)
    return " ".join(str(examples) for _, examples in sizes) or "-"


def busy_seconds(records: Iterable[JobRecord]) -> float:
    """Wall time during which any of these steps ran: steps side by side count once, and the
    time a run was stopped between steps not at all."""
    spans = sorted(
        (finished - record.seconds, finished)
        for record in records
        for finished in [datetime.fromisoformat(record.finished_at).timestamp()]
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def iteration_table(status: SocietyStatus, jobs: Mapping[str, JobRecord]) -> str:
    """One row per iteration: its evaluation, the data its debate made for the next
    iteration (examples per agent, in agent order), and the time its steps took (training the
    iteration's models, then its debate; wall time, so steps run side by side count once)."""
    rows = [COLUMNS]
    for entry in sorted(status.iterations, key=lambda e: e.iteration):
        accuracy = "-"
        if entry.accuracy is not None:
            accuracy = f"{100 * entry.accuracy:.1f} ± {100 * (entry.accuracyStderr or 0):.1f}"
        seconds = busy_seconds(r for r in jobs.values() if r.iteration == entry.iteration)
        rows.append(
            (
                str(entry.iteration),
                accuracy,
                "-" if entry.consensus is None else f"{entry.consensus:.3f}",
                "-" if entry.diversity is None else f"{entry.diversity:.3f}",
                _sizes(entry, "generation"),
                _sizes(entry, "critic"),
                _duration(seconds),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    methods = {e.diversityMethod for e in status.iterations if e.diversityMethod}
    if methods:
        lines.append(f"diversity: {', '.join(sorted(methods))} (see docs/method.md)")
    return "\n".join(line.rstrip() for line in lines)
