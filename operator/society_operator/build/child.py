"""One object the operator creates for a Society: its manifest, and for a Job its step config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from society_trainer.config import DebateConfig, FinetuneConfig

StepConfig = DebateConfig | FinetuneConfig


@dataclass(frozen=True)
class Child:
    """The manifest goes to the apiserver; the step config (what the Job's pod finds in
    $SOCIETY_STEP_CONFIG) is kept beside it, typed, for `society run`, which runs the step
    itself, and for the reconciler, which reads what the step was asked to do."""

    body: dict[str, Any]
    config: StepConfig | None = None

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def labels(self) -> dict[str, str]:
        return self.body["metadata"]["labels"]
