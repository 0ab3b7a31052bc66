"""A scripted in-memory generator: the test double for a model when a test is about the debate's
mechanics (routing, history, seeds, resume), not about generation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from society_trainer.generation import CompletionRequest


class ScriptedGenerator:
    """Answers `capacity` requests at a time, in arrival order, like a server with a batch
    limit; `fail_after` raises KeyboardInterrupt (nothing in the engine catches it, as with a
    kill) when that many requests have been answered."""

    def __init__(
        self,
        respond: Callable[[CompletionRequest], str],
        fail_after: int | None = None,
        capacity: int = 1_000_000,
    ):
        self.respond = respond
        self.fail_after = fail_after
        self.capacity = asyncio.Semaphore(capacity)
        self.requests: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> str:
        async with self.capacity:
            if self.fail_after is not None and len(self.requests) >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.requests.append(request)
            await asyncio.sleep(0)
            return self.respond(request)

    async def aclose(self) -> None:
        pass
