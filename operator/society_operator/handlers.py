"""The kopf wiring: watch Societies and their children, and drive each Society with `reconcile`.

What each piece does, and why:

- Indexes (``kopf.index``) keep every Job, Deployment, Pod and PersistentVolumeClaim labelled
  ``society.dev/society`` in memory, filled by kopf's watches, keyed by (namespace, society). The
  reconciler reads them instead of listing, so a reconcile costs one GET (the Society, fresh, so
  its status is never stale) and only the writes it needs.
- Every Society gets one loop (an asyncio task, started from the Society's first event) that
  reconciles whenever it is woken -- by a child's event, by a change of the Society's spec
  (generation), by leadership changing hands -- and every ``resync_seconds`` anyway, so deadlines
  fire without an event. One loop per Society means no two reconciles of one Society overlap.
  It is a plain task rather than a ``kopf.daemon`` because a daemon makes kopf put a finalizer on
  the Society, and then deleting a Society would hang whenever the operator is down.
- Only the leader acts (leader.py). Followers keep their caches warm and write nothing.
- The status is replaced under the resourceVersion it was computed from, and only when it changed;
  Events are posted after that write succeeds, so a retried reconcile does not repeat them.

`register(registry)` attaches all handlers to a registry (the tests use a fresh one per test);
importing this module registers them in kopf's default registry, which is what
`kopf run -m society_operator` and `society operator` run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from .api import GROUP, PLURAL, VERSION
from .api.status import SocietyStatus
from .builders import LABEL_ROLE, LABEL_SOCIETY
from .cluster import Cluster, Conflict
from .leader import LeaseElector, LeaseTimings
from .metrics import MetricsServer, OperatorMetrics
from .observe import observe
from .reconciler import Event, Plan, reconcile, set_condition
from .settings import Settings
from .api.validation import Problem, check_society

logger = logging.getLogger(__name__)

# The children kinds the operator indexes, as kopf names them: (group, version, plural).
CHILD_RESOURCES = (
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
    ("", "v1", "persistentvolumeclaims"),
)
Key = tuple[str, str]  # (namespace, society name)


def _index_id(plural: str) -> str:
    return f"society_{plural}"  # also the keyword under which kopf passes the index to handlers


@dataclass(frozen=True)
class OperatorConfig:
    """How this operator process runs (the `society operator` options, or the environment)."""

    settings: Settings = field(default_factory=Settings)
    resync_seconds: float = 60.0
    leader_election: bool = True
    lease_name: str = "society-operator"
    lease_namespace: str = "default"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    lease_timings: LeaseTimings = field(default_factory=LeaseTimings)
    metrics_port: int | None = None  # serve /metrics there; None: not at all

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> OperatorConfig:
        """POD_NAME and POD_NAMESPACE come from the downward API in the chart's Deployment."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {"settings": Settings.from_env(env)}
        if env.get("POD_NAME"):
            values["identity"] = env["POD_NAME"]
        if env.get("POD_NAMESPACE"):
            values["lease_namespace"] = env["POD_NAMESPACE"]
        return cls(**(values | overrides))


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings for a long-lived operator; values already set (by tests) are kept."""
    watching, networking = settings.watching, settings.networking
    # Without a server-side timeout a watch that the network silently dropped never ends, and
    # the operator goes deaf; with one, kopf reconnects and resumes from its resourceVersion.
    if watching.server_timeout is None:
        watching.server_timeout = 300
    if watching.client_timeout is None:
        watching.client_timeout = 330
    if watching.connect_timeout is None:
        watching.connect_timeout = 30
    if networking.request_timeout is None:
        networking.request_timeout = 60
    settings.peering.standalone = True  # replicas coordinate through a Lease, not kopf peering
    settings.posting.loggers = False  # Events are the explicit ones below, not log lines


class Controller:
    """The Societies this process drives: one loop each, gated on leadership."""

    def __init__(self, config: OperatorConfig, cluster: Cluster) -> None:
        self.config = config
        self.cluster = cluster
        self.metrics = OperatorMetrics()
        self._metrics_server: MetricsServer | None = None
        self.indexes: dict[str, Any] = {}  # plural -> kopf.Index, live views kopf keeps filled
        self._loops: dict[Key, asyncio.Task[None]] = {}
        self._wakes: dict[Key, asyncio.Event] = {}
        self._generations: dict[Key, int | None] = {}
        self._elector: LeaseElector | None = None
        self._elector_task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._elector.leading if self._elector is not None else True

    async def start(self) -> None:
        if self.config.metrics_port is not None:
            self._metrics_server = self.metrics.serve(self.config.metrics_port)
        self.metrics.leading(not self.config.leader_election)
        if self.config.leader_election:
            self._elector = LeaseElector(
                self.cluster.coordination,
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
        tasks = list(self._loops.values())
        if self._elector_task is not None:
            tasks.append(self._elector_task)  # cancelling it hands the Lease back
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops.clear()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.cluster.close()

    # --- loops ----------------------------------------------------------------------------------

    def seen(self, namespace: str, name: str, generation: int | None) -> None:
        """A Society event: start its loop, or wake it if the spec changed."""
        key = (namespace, name)
        if key not in self._loops:
            self._wakes[key] = asyncio.Event()
            # Created from within a kopf handler, the task inherits the context that
            # kopf.event() needs to post Events.
            self._loops[key] = asyncio.create_task(self._loop(key), name=f"society {key}")
        elif self._generations.get(key) != generation:
            self.wake(namespace, name)
        self._generations[key] = generation

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        task = self._loops.pop(key, None)
        if task is not None:
            task.cancel()
        self._wakes.pop(key, None)
        self._generations.pop(key, None)
        self.metrics.society_deleted(namespace, name)

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
                    delay = 0  # the Society moved on while we worked: again, from the new one
                except Exception:
                    failures += 1
                    delay = min(self.config.resync_seconds, 2.0**failures)
                    logger.exception(
                        "reconciling Society %s/%s failed; retry in %.0fs", *key, delay
                    )
                self.metrics.reconciled(time.monotonic() - started, error=failures > 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    # --- one reconcile --------------------------------------------------------------------------

    def children(self, plural: str, key: Key) -> list[dict[str, Any]]:
        index = self.indexes.get(plural)
        return list(index.get(key, ())) if index is not None else []

    async def reconcile(self, namespace: str, name: str) -> float:
        """Reconcile one Society once; return how long until it should be looked at again."""
        body = await self.cluster.get_society(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return self.config.resync_seconds  # its children go with it (ownerReferences)
        now = datetime.now(UTC).replace(microsecond=0)
        society, problems = check_society(body)
        if society is None:
            plan = invalid(body, problems, now)
        else:
            key = (namespace, name)
            observed = observe(
                name,
                jobs=self.children("jobs", key),
                deployments=self.children("deployments", key),
                pods=self.children("pods", key),
                claim_exists=bool(self.children("persistentvolumeclaims", key)),
                now=now,
            )
            plan = reconcile(society, observed, self.config.settings, now)
            await self.apply(namespace, plan)
        status = plan.status.model_dump(mode="json", exclude_none=True)
        if status != (body.get("status") or {}):
            await self.cluster.replace_status(body, status)
            post(body, plan.events)
            for event in plan.events:
                if event.job is not None:
                    self.metrics.job_failed(
                        namespace, name, self.job_role(namespace, name, event.job)
                    )
        self.metrics.society_status(namespace, name, plan.status)
        return self.config.resync_seconds

    def job_role(self, namespace: str, name: str, job: str) -> str:
        """debate, generation or critic: what the failed Job was doing."""
        for body in self.children("jobs", (namespace, name)):
            if body["metadata"]["name"] == job:
                return body["metadata"]["labels"].get(LABEL_ROLE, "debate")
        return "debate"

    async def apply(self, namespace: str, plan: Plan) -> None:
        for obj in plan.create:
            if await self.cluster.create(namespace, obj):
                logger.info("created %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
        for kind, name in plan.delete:
            if await self.cluster.delete(namespace, kind, name):
                logger.info("deleted %s %s/%s", kind, namespace, name)
        for name, replicas in plan.scale.items():
            await self.cluster.scale(namespace, name, replicas)
        for name, suspend in plan.suspend_jobs.items():
            await self.cluster.suspend_job(namespace, name, suspend)


def invalid(body: dict[str, Any], problems: Iterable[Problem], now: datetime) -> Plan:
    """A Society the schema let through but the models reject (e.g. a CRD older than the
    operator): Failed, quoting the same lines `society validate` prints."""
    try:
        status = SocietyStatus.model_validate(body.get("status") or {})
    except ValueError:
        status = SocietyStatus()
    message = "invalid spec: " + "; ".join(str(p) for p in problems)
    generation = body["metadata"].get("generation")
    status.phase = "Failed"
    for kind in ("Ready", "Progressing", "Suspended"):
        set_condition(status, kind, False, "InvalidSpec", message, generation, now)
    set_condition(status, "Failed", True, "InvalidSpec", message, generation, now)
    status.observedGeneration = generation
    return Plan(status=status, events=[Event("InvalidSpec", message, "Warning")])


def post(body: dict[str, Any], events: Iterable[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


# --- kopf registrations -----------------------------------------------------------------------


def _by_society(namespace: str | None, labels: dict[str, str], body: Any, **_: Any) -> Any:
    return {(namespace, labels[LABEL_SOCIETY]): dict(body)}


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry)
    async def start_controller(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        config = memo.get("config") or OperatorConfig.from_env()
        memo["controller"] = controller = Controller(config, Cluster.from_environment())
        await controller.start()

    @kopf.on.cleanup(registry=registry)
    async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
        if "controller" in memo:
            await memo["controller"].stop()

    @kopf.on.probe(id="leading", registry=registry)
    async def leading(memo: kopf.Memo, **_: Any) -> bool:
        return memo["controller"].leading

    ours = {LABEL_SOCIETY: kopf.PRESENT}
    for group, version, plural in CHILD_RESOURCES:
        kopf.index(group, version, plural, labels=ours, id=_index_id(plural), registry=registry)(
            _by_society
        )

        @kopf.on.event(
            group, version, plural, labels=ours, id=f"wake_on_{plural}", registry=registry
        )
        async def wake_owner(
            namespace: str, labels: dict[str, str], memo: kopf.Memo, **_: Any
        ) -> None:
            memo["controller"].wake(namespace, labels[LABEL_SOCIETY])

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def society_event(type: str | None, body: Any, memo: kopf.Memo, **kwargs: Any) -> None:
        controller: Controller = memo["controller"]
        meta = body["metadata"]
        if type == "DELETED":
            controller.forget(meta["namespace"], meta["name"])
            return
        for _, _, plural in CHILD_RESOURCES:
            controller.indexes[plural] = kwargs[_index_id(plural)]
        controller.seen(meta["namespace"], meta["name"], meta.get("generation"))


# Handlers are async so that they run in kopf's event loop, where the loops live: sync ones would
# run in kopf's thread pool.
register(kopf.get_default_registry())


def run(
    config: OperatorConfig,
    *,
    namespaces: Iterable[str] = (),
    health_port: int | None = 8080,
    verbose: bool = False,
) -> None:
    """Run the operator in this process until SIGTERM or SIGINT (what `society operator` does)."""
    namespaces = list(namespaces)
    kopf.configure(verbose=verbose)
    liveness = f"http://0.0.0.0:{health_port}/healthz" if health_port else None
    asyncio.run(
        kopf.operator(
            registry=kopf.get_default_registry(),
            memo=kopf.Memo(config=config),
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness,
        )
    )
