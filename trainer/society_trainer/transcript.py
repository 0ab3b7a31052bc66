"""The debate's record of one question, as one JSON line of an append-only transcript.

Everything later steps need is here: Algorithm 1 rebuilds each agent's conversation from the
turns' prompts and responses, and evaluation grades the majority answer against the reference.
The reference answer is kept for evaluation only: building finetuning data never reads it (the
method uses no ground truth).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)


class Turn(BaseModel):
    """One agent's answer in one round, with the user message it answered."""

    model_config = ConfigDict(frozen=True)

    agent: int
    model: str
    prompt: str
    response: str
    answer: str | None
    summary: str | None = None  # what the summariser condensed for this critic turn


class QuestionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    reference: str
    rounds: list[list[Turn]]  # rounds[m][n]: agent n's turn in round m+1
    majority: str | None

    def final_answers(self) -> list[str | None]:
        return [turn.answer for turn in self.rounds[-1]]


def settings_path(transcript: Path) -> Path:
    """Where the settings a transcript was debated with are recorded, beside it."""
    return transcript.with_suffix(".settings.json")


def start_transcript(path: Path, settings: dict) -> None:
    """Make `path` the transcript of a debate with `settings` (JSON values). A transcript debated
    with other settings, or with none recorded, is moved aside to <path>.stale and the debate
    starts afresh: resuming it would mix answers sampled two ways (say, two temperatures or two
    critic prompts) into one evaluation and one dataset."""
    recorded = settings_path(path)
    if path.exists() and path.stat().st_size:
        try:
            previous = json.loads(recorded.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            changed = sorted(
                key
                for key in set(settings) | set(previous or {})
                if (previous or {}).get(key) != settings.get(key)
            )
            stale = path.with_name(path.name + ".stale")
            log.warning(
                "%s was debated with other settings (%s); moved to %s, debating afresh",
                path,
                ", ".join(changed) if previous is not None else "none recorded",
                stale.name,
            )
            path.replace(stale)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = recorded.with_name(recorded.name + ".partial")
    partial.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    partial.replace(recorded)


def read_transcript(path: Path) -> list[QuestionRecord]:
    """Every complete record in `path`. A torn last line (the writer was killed mid-write) is
    dropped and the file truncated to the last complete record, so appending can resume."""
    if not path.exists():
        return []
    records: list[QuestionRecord] = []
    good_bytes = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                records.append(QuestionRecord.model_validate_json(raw))
            except (ValidationError, json.JSONDecodeError, ValueError):
                if raw.endswith(b"\n"):
                    raise ValueError(f"{path}:{number}: not a transcript record") from None
                log.warning("%s: dropping a torn last record (the previous run was cut off)", path)
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as stream:
            stream.truncate(good_bytes)
    return records


class TranscriptWriter:
    """Appends records one line at a time, flushed, so a kill loses at most the line in flight."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = path.open("a", encoding="utf-8")

    def write(self, record: QuestionRecord) -> None:
        self._stream.write(record.model_dump_json() + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines atomically (a reader never sees half a file); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    count = 0
    with partial.open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    partial.replace(path)
    return count
