"""What each step reports, as typed models: the other half of the contract in `config.py`.

A step writes its result to `summary.json` (the debate) or `society-summary.json` (a finetune)
and, compactly, to its pod's termination message, which is how the operator reads it; `society
run` reads the same message from a file. Both read it through `read_result`, so the keys are
named once, here. Pure pydantic, importable without torch, like `config.py`.

Field names are the wire format (camelCase, as the Society's status is), so older messages
still parse. Unknown keys are kept, not refused: a newer trainer may report more than this
operator knows, and that must not fail a run.
"""

from __future__ import annotations

import json
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Role = Literal["generation", "critic"]

# The kubelet keeps at most this much of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
# A step exits with this code when its configuration is wrong (an invalid step config, a model or
# dataset that cannot be found or read): retrying cannot help, so the Job's podFailurePolicy
# fails it at once. Other failures exit 1 and are retried up to backoffLimit. (EX_CONFIG of
# sysexits.h.)
CONFIG_ERROR_EXIT_CODE = 78


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class EvalResult(ResultModel):
    """The debate on the evaluation split: the iteration's accuracy."""

    questions: int = Field(ge=0)
    correct: int = Field(0, ge=0)
    accuracy: float = Field(ge=0.0, le=1.0)
    accuracyStderr: float = Field(0.0, ge=0.0)
    consensus: float | None = Field(None, ge=0.0, le=1.0)
    diversity: float | None = Field(None, ge=0.0)
    diversityMethod: str | None = None


class TrainSplitResult(ResultModel):
    """The debate on the training split: what the next iteration's data came from."""

    questions: int = Field(ge=0)
    withMajority: int = Field(0, ge=0)
    consensus: float | None = Field(None, ge=0.0, le=1.0)
    corrected: list[int] = Field(default_factory=list)
    keptCorrect: list[int] = Field(default_factory=list)


class DatasetResult(ResultModel):
    """One agent's finetuning dataset in one role."""

    agent: int = Field(ge=0)
    role: Role
    examples: int = Field(ge=0)


class DebateResult(ResultModel):
    """`society-trainer debate`: an evaluation, a training split's data, or both."""

    step: Literal["debate"] = "debate"
    iteration: int | None = Field(None, ge=0)
    mode: str = "multiagent"
    eval: EvalResult | None = None
    train: TrainSplitResult | None = None
    datasets: list[DatasetResult] | None = None  # None in a message trimmed to the limit
    truncated: bool | None = None  # True in a message trimmed to the limit, else absent
    seconds: float | None = None

    def termination_message(self) -> str:
        """Compact JSON within the kubelet's limit. Per-agent dataset sizes are the part that
        grows fastest with agents (two entries each); past the limit they are left to
        summary.json, and what remains fits for far more agents than the API's 16."""
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        trimmed = self.model_copy(update={"datasets": None, "truncated": True})
        return trimmed.model_dump_json(exclude_none=True)


class FinetuneResult(ResultModel):
    """`society-trainer finetune`: one agent's model of one iteration."""

    step: Literal["finetune"] = "finetune"
    iteration: int = Field(ge=1)
    agent: int = Field(ge=0)
    role: Role
    method: str = "lora"
    examples: int = Field(ge=0)
    droppedRows: int | None = Field(None, ge=0)  # too long, or with nothing left to learn
    carriedForward: bool = False
    note: str | None = None
    resumedFrom: str | None = None
    steps: int = Field(0, ge=0)
    trainLoss: float | None = None
    firstLoss: float | None = None
    finalLoss: float | None = None
    tokens: int | None = None
    trainSeconds: float | None = None
    tokensPerSecond: float | None = None
    seconds: float | None = None
    peakMemoryBytes: int | None = None

    def termination_message(self) -> str:
        return self.model_dump_json(exclude_none=True)


class StepError(ResultModel):
    """A step that failed says why, in one line."""

    error: str

    def termination_message(self) -> str:
        return json.dumps({"error": self.error[:3800]})


R = TypeVar("R", bound=ResultModel)


class ResultError(ValueError):
    """A termination message that is not a step's result; says what is wrong in one line."""


def read_result(message: str, kind: type[R]) -> R | StepError:
    """A termination message as the step meant it: its result of type `kind`, or the error it
    reported. Raises ResultError for anything else (a log tail, torn JSON, a wrong shape)."""
    try:
        data = json.loads(message)
    except json.JSONDecodeError as error:
        raise ResultError(f"not JSON ({error.msg} at character {error.pos})") from None
    if isinstance(data, dict) and "error" in data:
        return StepError(error=str(data["error"]))
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the message"
        raise ResultError(f"{where}: {first['msg']}") from None
