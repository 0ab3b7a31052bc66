"""One loop per Society: observe its children from the watch caches, `reconcile`, apply the
Plan, write the status. The one place the operator writes a Society's status.

- Reads come from kopf's indexes (`handlers.py`): the Societies themselves, and every Job,
  Deployment, Pod, Service and PersistentVolumeClaim labelled ``society.dev/society``, keyed by
  (namespace, society). A reconcile sends only the writes it needs.
- Never from a stale Society: after the operator writes a status, the watch delivers the new
  object a moment later, so until it does the reconcile starts from the object that write
  returned (`_Written`: the resourceVersions it superseded). A status write refused with a
  conflict waits for the watch to deliver the newer object (a Society event wakes the loop), and
  only if none comes within ``CONFLICT_WAIT_SECONDS`` reads the Society once with a GET.
- Every Society gets one loop (an asyncio task, started from the Society's first event) that
  reconciles whenever it is woken -- by a child's event, by a change of the Society's spec
  (generation), by leadership changing hands -- and every ``resync_seconds`` anyway, so deadlines
  fire without an event. One loop per Society means no two reconciles of one Society overlap.
  It is a plain task rather than a ``kopf.daemon`` because a daemon makes kopf put a finalizer on
  the Society, and then deleting a Society would hang whenever the operator is down.
- Only the leader acts (leader.py). Followers keep their caches warm and write nothing.
- The status is replaced under the resourceVersion it was computed from, and only when it changed;
  Events are posted after that write succeeds, so a retried reconcile does not repeat them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from ..api.validation import Checked, check_society
from ..build.child import Child
from ..core.observe import observe
from ..core.observed import Observed
from ..core.plan import Plan
from ..core.reconciler import reconcile
from ..core.status import FINAL_PHASES, reconcile_invalid
from .background import Background
from .client import SLOW_KINDS, Cluster, Conflict, NamespaceTerminating
from .config import OperatorConfig
from .leader import LeaseElector
from .metrics import MetricsServer, OperatorMetrics
from .unseen import Unseen

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, society name)
Made = tuple[str, str, str | None]  # (kind, name, the Society's uid)
JSON = dict[str, Any]
# After a conflict on the status write, how long the loop waits for the watch to bring the newer
# Society before it reads it with a GET (a 409 injected by a proxy changes nothing to watch).
CONFLICT_WAIT_SECONDS = 2.0


_ACTIVE = {True: "reactivated", False: "deactivated"}
# Children made once per Society and never changed (build/access.py): its API key Secret and
# NetworkPolicies. They are not watched, so the reconciler asks for them again with each
# iteration's servers; this process creates each once per Society uid (after a restart, the
# first ask is one more create, answered 409).
CREATED_ONCE = ("Secret", "NetworkPolicy")
CREATED_FIRST = ("PersistentVolumeClaim", *CREATED_ONCE)  # what the other children read


def _version(body: JSON) -> str:
    return body["metadata"].get("resourceVersion", "")


@dataclass
class _Written:
    """What this process knows of a Society beyond its watch cache: the resourceVersions that
    its status writes superseded (or that a write found outdated), and the newest object it
    holds -- the one its last write returned -- or None after a conflict (newer unknown)."""

    stale: set[str] = field(default_factory=set)
    body: JSON | None = None


class Controller:
    """The Societies this process drives: one loop each, gated on leadership."""

    def __init__(self, config: OperatorConfig, cluster: Cluster) -> None:
        self.config = config
        self.cluster = cluster
        self.metrics = OperatorMetrics()
        self._metrics_server: MetricsServer | None = None
        self.indexes: dict[str, Any] = {}  # plural -> kopf.Index, live views kopf keeps filled
        self._loops: dict[Key, asyncio.Task[None]] = {}
        self._stopping = False  # kopf may still deliver events while stop() runs
        self._wakes: dict[Key, asyncio.Event] = {}
        self._generations: dict[Key, int | None] = {}
        self._written: dict[Key, _Written] = {}
        # Per Society, the spec.active set on each Job's Kueue Workload (by Job uid), so that
        # a suspended Society does not list its Workloads again at every reconcile.
        self._queue_active: dict[Key, dict[str, bool]] = {}
        self._made: dict[Key, set[Made]] = {}  # the CREATED_ONCE children sent
        self._unseen: dict[Key, Unseen] = {}  # children made that the watch has not shown
        # Per Society, the last version validated (uid, resourceVersion) and the outcome: every
        # event of a child wakes a Society, and validating each time cost a tenth of the time.
        self._checked: dict[Key, tuple[tuple[str, str], Checked]] = {}
        self._elector: LeaseElector | None = None
        # Namespaces being deleted: their Societies go with them, so nothing is done there.
        self._terminating: set[str] = set()
        self._elector_task: asyncio.Task[None] | None = None
        # Service writes, which the reconcile does not wait for (background.py).
        self.background = Background(self.wake, self._terminating_namespace, config.resync_seconds)

    @property
    def leading(self) -> bool:
        return self._elector.leading if self._elector is not None else True

    def check_alive(self) -> None:
        """Raise if leader election has stopped: the replica could never lead (or stop leading)
        again, so /healthz must fail and the kubelet restart the pod."""
        task = self._elector_task
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            raise RuntimeError(f"leader election stopped: {error!r}")

    async def start(self) -> None:
        if self.config.metrics_port is not None:
            self._metrics_server = self.metrics.serve(self.config.metrics_port)
        self.metrics.leading(not self.config.leader_election)
        if self.config.leader_election:
            self._elector = LeaseElector(
                self.cluster.rest,
                name=self.config.lease_name,
                namespace=self.config.lease_namespace,
                identity=self.config.identity,
                timings=self.config.lease_timings,
                on_change=self._leadership_changed,
            )
            self._elector_task = asyncio.create_task(self._elector.run(), name="leader election")

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leading(leading)
        self.wake_all()

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._loops.values())
        if self._elector_task is not None:
            tasks.append(self._elector_task)  # cancelling it hands the Lease back
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.background.stop()
        self._loops.clear()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.cluster.close()

    # --- loops ----------------------------------------------------------------------------------

    def seen(
        self, namespace: str, name: str, generation: int | None, version: str | None = None
    ) -> None:
        """A Society event: start its loop, or wake it if the spec changed or if it waits, after
        a conflict, for a newer object than the one its write was refused on."""
        key = (namespace, name)
        if self._stopping:
            return  # a loop started now would reconcile on a closed client
        if key not in self._loops:
            self._wakes[key] = asyncio.Event()
            # Created from within a kopf handler, the task inherits the context that
            # kopf.event() needs to post Events.
            self._loops[key] = asyncio.create_task(self._loop(key), name=f"society {key}")
        elif self._generations.get(key) != generation or self._waits_for(key, version):
            self.wake(namespace, name)
        self._generations[key] = generation

    def _waits_for(self, key: Key, version: str | None) -> bool:
        """Whether the loop waits, after a conflict, for a version other than these stale ones."""
        written = self._written.get(key)
        return written is not None and written.body is None and version not in written.stale

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        task = self._loops.pop(key, None)
        if task is not None:
            task.cancel()
        self._wakes.pop(key, None)
        self._generations.pop(key, None)
        self._written.pop(key, None)
        self._queue_active.pop(key, None)
        self._made.pop(key, None)
        self._unseen.pop(key, None)
        self._checked.pop(key, None)
        self.background.forget(key)
        self.metrics.society_deleted(namespace, name)
        if not any(ns == namespace for ns, _ in self._loops):  # gone, or to be made anew
            self._terminating.discard(namespace)

    def wake(self, namespace: str, name: str) -> None:
        wake = self._wakes.get((namespace, name))
        if wake is not None:
            wake.set()

    def wake_all(self) -> None:
        for wake in self._wakes.values():
            wake.set()

    async def _loop(self, key: Key) -> None:
        wake = self._wakes[key]
        failures = 0
        while True:
            wake.clear()
            delay = self.config.resync_seconds
            if self.leading:
                started = time.monotonic()
                try:
                    delay = await self.reconcile(*key)
                    failures = 0
                except Conflict:
                    # The Society moved on while we worked: again, from the new one, once the
                    # watch brings it (a Society event wakes the loop).
                    delay = CONFLICT_WAIT_SECONDS
                except NamespaceTerminating:
                    self._terminating_namespace(key[0])
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(self.config.resync_seconds, 2.0**failures)
                    logger.exception(
                        "reconciling Society %s/%s failed; retry in %.0fs", *key, delay
                    )
                self.metrics.reconciled(time.monotonic() - started, error=failures > 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    def _terminating_namespace(self, namespace: str) -> None:
        if namespace not in self._terminating:
            logger.info("namespace %s is being deleted: nothing more is created there", namespace)
        self._terminating.add(namespace)

    # --- one reconcile --------------------------------------------------------------------------

    def children(self, plural: str, key: Key) -> list[dict[str, Any]]:
        index = self.indexes.get(plural)
        return list(index.get(key, ())) if index is not None else []

    async def reconcile(self, namespace: str, name: str) -> float:
        """Reconcile one Society once; return how long until it should be looked at again."""
        if namespace in self._terminating:
            return self.config.resync_seconds  # the Society goes with its namespace
        body = await self.society((namespace, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            return self.config.resync_seconds  # its children go with it (ownerReferences)
        now = datetime.now(UTC).replace(microsecond=0)
        society, problems = self.check(namespace, name, body)
        if society is None:
            plan = reconcile_invalid(body, problems, now)
        else:
            key = (namespace, name)
            observed = observe(
                name,
                society.metadata.uid,
                jobs=self.children("jobs", key),
                deployments=self.children("deployments", key),
                pods=self.children("pods", key),
                claims=self.children("persistentvolumeclaims", key),
                now=now,
                services=self.children("services", key),
            )
            plan = reconcile(society, observed, self.config.settings, now)
            await self.apply(key, plan, society.metadata.uid)
            await self.set_queue_active(key, plan, observed)
        await self.write_status(body, plan)
        return self.config.resync_seconds

    def check(self, namespace: str, name: str, body: JSON) -> Checked:
        """check_society(body), kept per version only while running (a model is ~24 KB)."""
        version = (body["metadata"].get("uid", ""), _version(body))
        last = self._checked.get((namespace, name))
        if last is not None and last[0] == version and version[1]:
            return last[1]
        checked = check_society(body)
        self._checked.pop((namespace, name), None)
        if (body.get("status") or {}).get("phase") not in FINAL_PHASES:
            self._checked[namespace, name] = (version, checked)
        return checked

    async def society(self, key: Key) -> JSON | None:
        """The newest Society this process knows: the watch cache's, unless the cache still
        holds a version that an own status write has superseded."""
        stores = self.indexes.get("societies")
        cached = next(iter(stores.get(key, ())), None) if stores is not None else None
        written = self._written.get(key)
        if cached is None or written is None or _version(cached) not in written.stale:
            self._written.pop(key, None)  # the cache has caught up (or the Society is gone)
            return cached
        if written.body is None:  # a conflict, and the watch has brought nothing newer since
            written.body = await self.cluster.get_society(*key)
            if written.body is None:
                return None
            written.stale.discard(_version(written.body))  # e.g. a 409 that changed nothing
        return written.body

    async def write_status(self, body: dict[str, Any], plan: Plan) -> None:
        """Replace the status if it changed, then post the Events and count what they say; the
        metrics store always takes the latest reading."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        status = plan.status.model_dump(mode="json", exclude_none=True)
        if status != (body.get("status") or {}):
            written = self._written.setdefault((namespace, name), _Written())
            written.stale.add(_version(body))
            try:
                written.body = await self.cluster.replace_status(body, status)
            except Exception:
                written.body = None  # `body` is outdated (a conflict) or may be: read anew
                raise
            for event in plan.events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message)
                if event.role is not None:
                    self.metrics.job_failed(namespace, name, event.role)
        self.metrics.society_status(namespace, name, plan.status)

    async def set_queue_active(self, key: Key, plan: Plan, observed: Observed) -> None:
        """Deactivate (suspend) or reactivate (resume) the Kueue Workloads of queued Jobs. A Job
        found running again was admitted through a Workload that Kueue made anew (as it may after
        an eviction): that one is deactivated too."""
        done = self._queue_active.setdefault(key, {})
        for name, active in plan.queue_active.items():
            job = observed.jobs[name]
            if job.uid is None:
                continue
            if done.get(job.uid) == active and (active or job.phase == "suspended"):
                continue
            if await self.cluster.set_queue_active(key[0], job.uid, active):
                done[job.uid] = active
                logger.info("%s the Workload of Job %s/%s", _ACTIVE[active], key[0], name)

    async def apply(self, key: Key, plan: Plan, uid: str | None = None) -> None:
        """Send the plan's writes, those that do not depend on each other at once: a reconcile
        then waits for the slowest, not for the sum, of requests that queue in the client's
        threads behind every other Society's. First the claim, API key and policies, which the
        rest reads; then the other children, the deletes (never of a name being created: the
        reconciler only creates what it does not see), and the scale and suspend patches.
        A Service's create or delete goes in the background (background.py)."""
        namespace = key[0]
        made = self._made.setdefault(key, set())
        unseen = self._unseen.setdefault(key, Unseen())
        unseen.forget_seen(lambda plural: self.children(plural, key))
        first: list[Callable[[], Awaitable[None]]] = []
        then: list[Callable[[], Awaitable[None]]] = []
        for child in plan.create:
            once = (child.kind, child.name, uid) if child.kind in CREATED_ONCE else None
            if once in made or (child.kind, child.name) in unseen:
                continue
            create = functools.partial(self._create, namespace, child, made, once, unseen)
            if child.kind in SLOW_KINDS:
                self.background.send(key, ("create", child.kind, child.name), create)
                continue
            (first if child.kind in CREATED_FIRST else then).append(create)
        for kind, name in plan.delete:
            unseen.deleted(kind, name)
            delete = functools.partial(self._delete, namespace, kind, name)
            if kind in SLOW_KINDS:
                self.background.send(key, ("delete", kind, name), delete)
            else:
                then.append(delete)
        await _together([write() for write in first])
        await _together(
            [
                *(write() for write in then),
                *(self.cluster.scale(namespace, n, replicas) for n, replicas in plan.scale.items()),
                *(self.cluster.suspend_job(namespace, n, s) for n, s in plan.suspend_jobs.items()),
            ]
        )

    async def _create(
        self,
        namespace: str,
        child: Child,
        made: set[Made],
        once: Made | None,
        unseen: Unseen,
    ) -> None:
        if await self.cluster.create(namespace, child.body):
            logger.info("created %s %s/%s", child.kind, namespace, child.name)
        if once is not None:
            made.add(once)
        unseen.made(child.kind, child.name)  # or there already (409): the watch will show it

    async def _delete(self, namespace: str, kind: str, name: str) -> None:
        if await self.cluster.delete(namespace, kind, name):
            logger.info("deleted %s %s/%s", kind, namespace, name)


async def _together(calls: list[Awaitable[Any]]) -> None:
    """Await them all; then raise the first error, if any (the others have been sent)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
