"""Leader election with a coordination.k8s.io Lease, so that of several replicas only one acts.

The algorithm is client-go's (k8s.io/client-go/tools/leaderelection): a candidate takes the Lease
when it is free or when its record has not changed for leaseDurationSeconds *as timed by the
candidate's own clock* (so clock skew between nodes does not matter), and the leader renews it
every retry period; a leader that cannot renew within the renew deadline stops acting before
another candidate may take over (renew deadline < lease duration). Writes are guarded by the
Lease's resourceVersion, so two candidates cannot both win.

Followers keep running (their watches keep kopf's caches warm), they just do not act: the
handlers ask `leading` before every reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes

from .rest import Rest, path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    duration: float = 15.0  # how long a silent holder keeps the Lease (client-go's default)
    renew_deadline: float = 10.0  # a leader that cannot renew for this long steps down
    retry_period: float = 2.0  # how often candidates try, and the leader renews

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("lease timings need retry_period < renew_deadline < duration")


def _micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        rest: Rest,
        *,
        name: str,
        namespace: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.rest, self.name, self.namespace, self.identity = rest, name, namespace, identity
        self.timings = timings
        self.on_change = on_change
        self.leading = False
        self._observed: tuple[Any, float] | None = None  # (the Lease's spec, when it last changed)
        self._renewed = 0.0  # monotonic time of the last successful renewal
        # One thread of its own for the campaign's calls: a call the round stopped waiting for
        # (_timeout) may go on in its thread for a while (the client retries), and with
        # asyncio's shared default executor those calls piled up, five or six of them, ahead of
        # everything else queued there, this elector's release of the Lease included.
        self._calls = ThreadPoolExecutor(1, thread_name_prefix=f"lease-{identity}")

    @property
    def _timeout(self) -> float:
        """Every Lease call gets this long: a call hung on a dead connection must not keep a
        leader that cannot renew from stepping down within the renew deadline."""
        return self.timings.renew_deadline / 2

    async def run(self) -> None:
        """Campaign and renew until cancelled; on cancellation, hand the Lease back. No error
        ends it: the client raises ApiExceptions, urllib3 errors, timeouts, and each is one
        failed attempt, retried after the retry period."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    call = loop.run_in_executor(self._calls, self._try_acquire_or_renew)
                    won = await asyncio.wait_for(call, self._timeout)
                except Exception as error:  # noqa: BLE001 - any failure is a lost round
                    logger.warning("leader election: %s", _one_line(error))
                    won = False
                if won:
                    self._renewed = time.monotonic()
                    self._set(True)
                elif time.monotonic() - self._renewed > self.timings.renew_deadline:
                    self._set(False)
                await asyncio.sleep(self.timings.retry_period)
        finally:
            self._calls.shutdown(wait=False, cancel_futures=True)
            if self.leading:
                self._set(False)
                await asyncio.to_thread(self._release)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            logger.info(
                "%s the leader of Lease %s/%s (identity %s)",
                "became" if leading else "is no longer",
                self.namespace,
                self.name,
                self.identity,
            )
            self.on_change(leading)

    def _spec(self, acquired: str | None, transitions: int) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timings.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _call(self, method: str, name: str = "", body: dict[str, Any] | None = None) -> Any:
        url = path("Lease", self.namespace, name)
        return self.rest.request(method, url, body=body, timeout=self._timeout)

    def _try_acquire_or_renew(self) -> bool:
        try:
            lease = self._call("GET", self.name)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            return self._write(lambda: self._call("POST", body=self._lease(self._spec(None, 0))))
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        now = time.monotonic()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
        duration = spec.get("leaseDurationSeconds") or self.timings.duration
        if holder and holder != self.identity and now - self._observed[1] < duration:
            return False  # held by a live leader
        mine = holder == self.identity
        transitions = (spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        body = self._lease(
            self._spec(spec.get("acquireTime") if mine else None, transitions),
            lease["metadata"]["resourceVersion"],
        )
        return self._write(lambda: self._call("PUT", self.name, body))

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        """A Lease body; with a resourceVersion, a write that fails if another came first."""
        metadata = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    @staticmethod
    def _write(write: Callable[[], Any]) -> bool:
        try:
            write()
        except kubernetes.client.ApiException as error:
            if error.status == 409:  # another candidate wrote first
                return False
            raise
        return True

    def _release(self) -> None:
        """Clear the holder so that a standby takes over at once instead of after the duration."""
        try:
            lease = self._call("GET", self.name)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            released = {
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "leaseTransitions": spec.get("leaseTransitions"),
            }
            body = self._lease(released, lease["metadata"]["resourceVersion"])
            self._call("PUT", self.name, body)
        except Exception as error:  # noqa: BLE001 - shutting down: the Lease expires anyway
            logger.warning("could not release the Lease: %s", _one_line(error))


def _one_line(error: BaseException) -> str:
    if isinstance(error, kubernetes.client.ApiException):
        return f"{error.status} {error.reason}"
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]
