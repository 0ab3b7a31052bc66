"""What a local run keeps on disk besides its artifacts: the finished Jobs (jobs.json). The
stored Society (society.json) is the Society's own manifest."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.observed import ObservedJob
from .process import LocalRunError


@dataclass(frozen=True)
class JobRecord:
    """A finished Job, as jobs.json keeps it: what the reconciler observes, plus what the final
    table reports (which iteration and part of the loop it was, and how long it took)."""

    phase: str  # succeeded | failed
    message: str
    reason: str | None
    finished_at: str  # ISO 8601
    component: str  # debate | training
    iteration: int
    seconds: float

    def observed(self, name: str) -> ObservedJob:
        return ObservedJob(
            name=name,
            phase=self.phase,  # type: ignore[arg-type]
            message=self.message,
            reason=self.reason,
            finished_at=datetime.fromisoformat(self.finished_at),
        )


def write_atomically(path: Path, text: str) -> None:
    """A Ctrl-C mid-write must not leave a torn state file that the next run cannot read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def read_state(path: Path) -> dict[str, Any]:
    """A state file this runner wrote; a damaged one is a one-line error that says what to do,
    never a traceback (and never silently ignored: it holds the run's progress)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise LocalRunError(
            f"{path}: cannot read this run's state ({reason}); delete the directory to start "
            "over, or use another --artifacts directory"
        ) from None
    if not isinstance(state, dict):
        raise LocalRunError(f"{path}: not this run's state (a JSON object was expected)")
    return state
