"""The writes a reconcile does not wait for (kube/background.py): one at a time, a create held
back while the same name's delete is on its way (the delete's end then wakes the Society's loop),
and a failed write retried after a backoff."""

from __future__ import annotations

import asyncio

from society_operator.kube.background import Background
from society_operator.kube.client import NamespaceTerminating

KEY = ("research", "tiny")


class World:
    def __init__(self) -> None:
        self.woken: list[tuple[str, str]] = []
        self.terminating: list[str] = []
        self.background = Background(
            lambda *key: self.woken.append(key), self.terminating.append, max_delay=0.01
        )
        self.sent: list[str] = []
        self.release = asyncio.Event()

    def write(self, name: str, error: Exception | None = None):
        async def call() -> None:
            self.sent.append(name)
            await self.release.wait()
            if error is not None:
                raise error

        return call


def test_a_write_on_its_way_is_not_sent_again_and_its_end_wakes_the_loop():
    async def scenario() -> None:
        world = World()
        background = world.background
        background.send(KEY, ("delete", "Service", "tiny-vllm"), world.write("delete"))
        background.send(KEY, ("delete", "Service", "tiny-vllm"), world.write("delete again"))
        # The next iteration's server, of the same name: created once the delete is through.
        background.send(KEY, ("create", "Service", "tiny-vllm"), world.write("create"))
        await asyncio.sleep(0.01)
        assert world.sent == ["delete"] and not world.woken
        world.release.set()
        await asyncio.sleep(0.01)
        assert world.woken == [KEY] and not background.sending(KEY)
        background.send(KEY, ("create", "Service", "tiny-vllm"), world.write("create"))
        await asyncio.sleep(0.01)
        assert world.sent == ["delete", "create"]
        assert world.woken == [KEY]  # a write that went through: its watch event wakes the loop

    asyncio.run(scenario())


def test_a_failed_write_wakes_the_loop_after_a_backoff_and_may_be_sent_again(caplog):
    async def scenario() -> None:
        world = World()
        world.release.set()
        write = ("create", "Service", "tiny-vllm")
        world.background.send(KEY, write, world.write("create", RuntimeError("500")))
        await asyncio.sleep(0)
        assert not world.woken
        await asyncio.sleep(0.05)
        assert world.woken == [KEY] and "create Service research/tiny-vllm failed" in caplog.text
        world.background.send(KEY, write, world.write("create again"))
        await asyncio.sleep(0.01)
        assert world.sent == ["create", "create again"]
        world.background.send(
            KEY, ("delete", "Service", "x"), world.write("gone", NamespaceTerminating("research"))
        )
        await asyncio.sleep(0.01)
        assert world.terminating == ["research"]

    asyncio.run(scenario())


def test_stop_cancels_what_is_on_its_way():
    async def scenario() -> None:
        world = World()
        world.background.send(KEY, ("delete", "Service", "tiny-vllm"), world.write("delete"))
        await asyncio.sleep(0)
        await world.background.stop()
        assert world.sent == ["delete"] and not world.woken

    asyncio.run(scenario())
