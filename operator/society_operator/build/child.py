"""One object the operator creates for a Society: its manifest, and for a Job its step config."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from society_trainer.config import DebateConfig, FinetuneConfig

StepConfig = DebateConfig | FinetuneConfig
JSON = dict[str, Any]


class Child:
    """The manifest goes to the apiserver; the step config (what the Job's pod finds in
    $SOCIETY_STEP_CONFIG) is kept beside it, typed, for `society run`, which runs the step
    itself, and for the reconciler, which reads what the step was asked to do.

    Kind and name are known at once; manifest and config are built when first read (`build`).
    Most reconciles read only names -- which children exist -- and building every Job's manifest
    at each child event was a tenth of the operator's event loop at 400 Societies (py-spy)."""

    def __init__(
        self, kind: str, name: str, build: Callable[[], tuple[JSON, StepConfig | None]]
    ) -> None:
        self.kind, self.name, self._build = kind, name, build

    @classmethod
    def of(cls, body: JSON) -> Child:
        """A manifest already built, with no step config."""
        return cls(body["kind"], body["metadata"]["name"], lambda: (body, None))

    @cached_property
    def _built(self) -> tuple[JSON, StepConfig | None]:
        return self._build()

    @property
    def body(self) -> JSON:
        return self._built[0]

    @property
    def config(self) -> StepConfig | None:
        return self._built[1]

    @property
    def labels(self) -> dict[str, str]:
        return self.body["metadata"]["labels"]

    def __repr__(self) -> str:
        return f"Child({self.kind}/{self.name})"
