"""Leader election under network trouble: the client raises urllib3 errors and hangs, not only
ApiExceptions. A test double of the Lease API plays the broken network, which a real apiserver
cannot be made to do on demand."""

from __future__ import annotations

import asyncio
import threading
import time

import kubernetes
import pytest
import urllib3

from society_operator.kube.config import OperatorConfig
from society_operator.kube.controller import Controller
from society_operator.kube.leader import LeaseElector, LeaseTimings

TIMINGS = LeaseTimings(duration=1.0, renew_deadline=0.4, retry_period=0.05)


class FlakyLeases:
    """The Lease requests the elector makes (read, create, replace), with the trouble a test
    switches on."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.trouble: str | None = None  # "reset", "refused" or "hang"
        self.timeouts: list[float | None] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def _call(self, timeout: float | None) -> None:
        self.timeouts.append(timeout)
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._trouble()
        finally:
            with self._lock:
                self.in_flight -= 1

    def _trouble(self) -> None:
        if self.trouble == "reset":
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
        if self.trouble == "refused":
            raise urllib3.exceptions.MaxRetryError(None, "/apis", "Connection refused")
        if self.trouble == "hang":
            self.released.wait(30)

    def _store(self, body: dict) -> dict:
        version = str(int(self.lease["metadata"]["resourceVersion"]) + 1) if self.lease else "1"
        self.lease = {**body, "metadata": {"name": "lease", "resourceVersion": version}}
        return self.lease

    def request(self, method, url, *, body=None, query=(), timeout=None):
        """rest.Rest.request, for the Lease's path: GET, POST (create) and PUT (replace)."""
        assert "/leases" in url, url
        self._call(timeout)
        if method == "GET":
            if self.lease is None:
                raise kubernetes.client.ApiException(status=404, reason="Not Found")
            return self.lease
        return self._store(body)


async def wait_until(predicate, seconds: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize("trouble", ["reset", "refused", "hang"])
def test_a_leader_that_cannot_renew_steps_down_and_takes_the_lease_again_later(trouble):
    api = FlakyLeases()
    elector = LeaseElector(api, name="lease", namespace="ns", identity="a", timings=TIMINGS)

    async def scenario() -> None:
        task = asyncio.create_task(elector.run())
        await wait_until(lambda: elector.leading, 2)
        api.trouble = trouble
        waited = await wait_until(lambda: not elector.leading, 3)
        # within the renew deadline, give or take one attempt's timeout and retry period
        assert waited < TIMINGS.renew_deadline + TIMINGS.renew_deadline / 2 + 0.3
        assert not task.done(), "an error of any kind must not end the election"
        api.trouble = None
        api.released.set()
        await wait_until(lambda: elector.leading, 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert api.timeouts and all(t is not None and t > 0 for t in api.timeouts)


def test_calls_that_hang_do_not_pile_up_in_threads():
    """A round stops waiting for a hung call after its timeout, but the call goes on in its
    thread: the next rounds wait behind it instead of taking more threads, and asyncio's default
    executor (which other work shares, the release of the Lease among it) stays free."""
    api = FlakyLeases()
    elector = LeaseElector(api, name="lease", namespace="ns", identity="a", timings=TIMINGS)

    async def scenario() -> None:
        task = asyncio.create_task(elector.run())
        await wait_until(lambda: elector.leading, 2)
        api.trouble = "hang"
        await asyncio.sleep(1.5)  # about six rounds of timeout and retry period
        assert api.most_in_flight == 1
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 0.5) == "free"
        api.trouble = None
        api.released.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_healthz_fails_once_leader_election_has_stopped(monkeypatch):
    class Cluster:
        rest = FlakyLeases()

        def close(self) -> None:
            pass

    async def broken(self) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(LeaseElector, "run", broken)
    controller = Controller(OperatorConfig(lease_timings=TIMINGS), Cluster())

    async def scenario() -> None:
        await controller.start()
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="leader election stopped: RuntimeError"):
            controller.check_alive()
        await controller.stop()

    asyncio.run(scenario())
