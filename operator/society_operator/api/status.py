"""`Society.status`: what the operator observed. Written only by the operator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import StatusModel
from .kube import Condition

Phase = Literal["Pending", "Serving", "Debating", "Training", "Succeeded", "Failed", "Suspended"]
Role = Literal["generation", "critic"]


class DatasetSize(StatusModel):
    """How many finetuning examples one agent got in one role."""

    agent: int = Field(ge=0)
    """Agent index, from 0."""
    role: Role
    """generation (first-round answers) or critic (whole exchanges)."""
    examples: int = Field(ge=0)
    """Examples in the agent's dataset; 0 means the agent keeps its previous weights."""


class IterationStatus(StatusModel):
    """Results of one iteration: the society's evaluation, and the data it produced."""

    iteration: int = Field(ge=0)
    """0 is the base society; iteration i follows i finetuning rounds."""
    accuracy: float | None = Field(None, ge=0.0, le=1.0)
    """Debate accuracy on the evaluation problems, as a fraction."""
    accuracyStderr: float | None = Field(None, ge=0.0)
    """Standard error of accuracy, sqrt(p(1-p)/n)."""
    evalQuestions: int | None = Field(None, ge=0)
    """Evaluation problems graded."""
    consensus: float | None = Field(None, ge=0.0, le=1.0)
    """Mean fraction of agents whose final answer equals the majority answer, counting only the
    agents whose answer parses and only the questions that have a majority."""
    diversity: float | None = Field(None, ge=0.0)
    """Mean dissimilarity between different agents' responses (see diversityMethod)."""
    diversityMethod: str | None = None
    """How diversity was measured: embedding:<model> or lexical."""
    trainQuestions: int | None = Field(None, ge=0)
    """Training problems debated in this iteration; none in the last one, which only evaluates
    (until finetune.iterations is raised: then they are debated, to train one more)."""
    datasets: list[DatasetSize] = Field(default_factory=list)
    """Finetuning examples built from this iteration's debate, per agent and role."""
    servingGpuSeconds: float | None = Field(None, ge=0.0)
    """GPU-seconds of this iteration's inference servers, booked as they stop or scale down."""
    startTime: datetime | None = None
    """When the iteration's first step started."""
    completionTime: datetime | None = None
    """When the iteration's last step finished."""


class ChildrenStatus(StatusModel):
    """Names of the objects the operator currently runs for this Society."""

    servers: list[str] = Field(default_factory=list)
    """vLLM Deployments (each with a Service of the same name)."""
    debateJob: str | None = None
    """The current debate Job."""
    trainingJobs: list[str] = Field(default_factory=list)
    """The current finetuning Jobs, one per agent and role."""
    claim: str | None = None
    """The PersistentVolumeClaim that holds the artifacts."""


class SocietyStatus(StatusModel):
    """Observed state of a Society."""

    phase: Phase | None = None
    """Pending, Serving, Debating, Training, Succeeded, Failed or Suspended. A summary for
    people; automation should read conditions."""
    iteration: int = Field(0, ge=0)
    """The iteration under way (or finished, once Succeeded)."""
    accuracy: float | None = Field(None, ge=0.0, le=1.0)
    """Accuracy of the latest evaluated iteration (the Accuracy column)."""
    observedGeneration: int | None = Field(None, ge=0)
    """The metadata.generation this status answers for (in every phase: compare it with
    metadata.generation to tell whether the operator has seen the latest spec)."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Failed and Suspended; Degraded once results went missing."""
    iterations: list[IterationStatus] = Field(default_factory=list)
    """One entry per iteration, in order."""
    children: ChildrenStatus = Field(default_factory=ChildrenStatus)
    """The objects the operator runs now."""
    gpuSeconds: float = Field(0.0, ge=0.0)
    """GPU-seconds used so far, summed over every pod that requested GPUs."""
    startTime: datetime | None = None
    """When the operator started the run."""
    completionTime: datetime | None = None
    """When the run reached Succeeded or Failed."""
