"""Writes that a reconcile sends and does not wait for: a Service's create and delete.

On a busy apiserver they take seconds (it allocates or frees the Service's ClusterIP: 15 s at
200 Societies on 2 shared cores, bench/operator_scale.py), and a Society's loop that waited for
them could not act on anything else meanwhile -- its training Jobs finishing, say. The outcome
needs no waiting: the watch brings the Service's event (which wakes the loop), and a write that
failed is asked for again by a later reconcile, which still sees the Service there (or not).

Each write is sent once at a time: while one is on its way, a reconcile that asks for it again
(it still sees the Service, or still does not) sends nothing, nor a create of a Service whose
delete is on its way (the next iteration's, of the same name; the delete's event wakes the loop,
which then creates it; and if that event came first, the delete's end wakes the loop). A failed
write wakes the loop after a backoff (2, 4, 8 ... seconds, at most the resync period), as a
failed reconcile is retried; a successful one's watch event does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .client import NamespaceTerminating

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, society name)
Write = tuple[str, str, str]  # (verb, kind, name)


class Background:
    def __init__(
        self,
        wake: Callable[[str, str], None],
        terminating: Callable[[str], None],
        max_delay: float,
    ) -> None:
        self._wake, self._terminating, self._max_delay = wake, terminating, max_delay
        self._sending: dict[Key, set[Write]] = {}
        self._held: dict[Key, set[Write]] = {}  # creates held back for a delete on its way
        self._failures: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def sending(self, key: Key) -> set[Write]:
        return self._sending.get(key, set())

    def send(self, key: Key, write: Write, call: Callable[[], Awaitable[Any]]) -> None:
        """Start `call()` unless this write is on its way already."""
        sending = self._sending.setdefault(key, set())
        if write in sending:
            return
        if ("delete", *write[1:]) in sending:  # a create now would be refused (409)
            self._held.setdefault(key, set()).add(write)
            return
        sending.add(write)
        task = asyncio.create_task(self._run(key, write, call), name=f"{write} of {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key, write: Write, call: Callable[[], Awaitable[Any]]) -> None:
        delay: float | None = None
        try:
            await call()
            self._failures.pop(key, None)
            held = self._held.get(key, set())
            if ("create", *write[1:]) in held:  # a reconcile held it back: it may come now
                held.discard(("create", *write[1:]))
                delay = 0.0
        except NamespaceTerminating:
            self._terminating(key[0])
        except Exception:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self._max_delay, 2.0**failures)
            logger.exception(
                "%s %s %s/%s failed; again in %.0fs", *write[:2], key[0], write[2], delay
            )
        finally:
            self._sending.get(key, set()).discard(write)
        if delay is not None:
            asyncio.get_running_loop().call_later(delay, self._wake, *key)

    def forget(self, key: Key) -> None:
        self._sending.pop(key, None)
        self._held.pop(key, None)
        self._failures.pop(key, None)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
