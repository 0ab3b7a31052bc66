"""What a finished debate Job reported, read with the trainer's own result models, and how it
goes into `status.iterations[]`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from society_trainer.results import DebateResult, ResultError, StepError, read_result

from ..api.status import DatasetSize, IterationStatus
from .failures import Failure
from .observed import ObservedJob


@dataclass(frozen=True)
class Missing:
    """A Job that succeeded but whose termination message never arrived."""

    message: str


def read_debate(job: ObservedJob, iteration: int) -> DebateResult | Missing | Failure:
    """A succeeded debate Job's result; Missing without a message; a Failure (ResultInvalid,
    naming the Job) when the message is not a debate's result."""
    if job.message is None:
        return Missing(
            f"Job {job.name} succeeded but no pod of it reported a termination message; "
            f"iteration {iteration}'s results are unknown (its summary is on the artifact volume)"
        )
    try:
        result = read_result(job.message, DebateResult)
    except ResultError as error:
        result = StepError(error=str(error))
    if isinstance(result, StepError):
        return Failure(
            "ResultInvalid",
            f"Job {job.name} succeeded but its result cannot be read: {result.error}",
            job.name,
            "debate",
        )
    return result


def dataset_sizes(result: DebateResult | None) -> list[DatasetSize]:
    datasets = (result.datasets if result else None) or []
    return [DatasetSize(agent=d.agent, role=d.role, examples=d.examples) for d in datasets]


def record_evaluation(entry: IterationStatus, result: DebateResult | None, now: datetime) -> None:
    """The iteration's evaluation (unknown without a result) and the data its debate made."""
    evaluation = result.eval if result else None
    if evaluation is not None:
        entry.accuracy = evaluation.accuracy
        entry.accuracyStderr = evaluation.accuracyStderr
        entry.evalQuestions = evaluation.questions
        entry.consensus = evaluation.consensus
        entry.diversity = evaluation.diversity
        entry.diversityMethod = evaluation.diversityMethod
    entry.datasets = dataset_sizes(result)
    entry.trainQuestions = result.train.questions if result and result.train else None
    entry.completionTime = now


def record_train_split(entry: IterationStatus, result: DebateResult | None) -> None:
    """A train split debated after the evaluation (finetune.iterations was raised)."""
    entry.trainQuestions = result.train.questions if result and result.train else 0
    entry.datasets = dataset_sizes(result)
