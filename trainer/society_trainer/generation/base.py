"""The generator protocol the debate engine is written against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict

from ..config import ModelRef, SamplingConfig


class Message(TypedDict):
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion. `seed` makes sampling repeatable per (question, agent, round)."""

    model: ModelRef
    messages: list[Message]
    sampling: SamplingConfig
    seed: int


class GenerationError(RuntimeError):
    """A completion that cannot succeed by retrying (bad request, unknown model, gave up)."""


class Generator(Protocol):
    """Completes chat conversations. Implementations batch or parallelise internally: the engine
    issues one request per (question, agent, round) from many concurrent coroutines."""

    async def complete(self, request: CompletionRequest) -> str: ...

    async def aclose(self) -> None: ...
