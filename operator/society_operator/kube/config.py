"""How an operator process runs: its options (the `society operator` flags, or the environment
the chart's Deployment sets) and the kopf settings a long-lived operator needs."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..build.names import LABEL_SOCIETY
from ..settings import Settings
from .leader import LeaseTimings

FALSE = ("0", "false", "no", "off")
IDLE_WORKER_SECONDS = 0.5  # see configure()


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
    # Watch only children labelled society.dev/society (server-side label selectors). False
    # ($SOCIETY_WATCH_SELECTORS=false) only to measure what they save (bench/operator_memory.py).
    watch_selectors: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> OperatorConfig:
        """POD_NAME and POD_NAMESPACE come from the downward API in the chart's Deployment."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {"settings": Settings.from_env(env)}
        if env.get("POD_NAME"):
            values["identity"] = env["POD_NAME"]
        if env.get("POD_NAMESPACE"):
            values["lease_namespace"] = env["POD_NAMESPACE"]
        if env.get("SOCIETY_WATCH_SELECTORS", "").strip().lower() in FALSE:
            values["watch_selectors"] = False
        return cls(**(values | overrides))


def configure(
    settings: kopf.OperatorSettings, children: Iterable[tuple[str, str, str]] = ()
) -> None:
    """kopf settings for a long-lived operator; values already set (by tests) are kept.

    `children`: the (group, version, plural) kinds the operator watches for its Societies'
    children. Their lists and watches carry `labelSelector=society.dev/society`, so the
    apiserver sends only labelled objects: the pods, Jobs, Deployments, Services and claims of
    everything else in the cluster never reach the operator, nor its memory. The Society watch
    stays unfiltered."""
    watching, networking = settings.watching, settings.networking
    for group, version, plural in children:
        watching.label_selectors[group, version, plural] = LABEL_SOCIETY
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
    settings.persistence.diffbase_storage = NoEssence()
    # kopf's per-object worker keeps the last event's whole body (a pod with its managedFields:
    # ~40 KB parsed) while it idles, waiting for the next: 5 s by default, long enough at 1000
    # Societies to hold thousands of bodies that nothing reads any more. A worker that exits
    # sooner costs only a new task at the object's next event.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.posting.loggers = False  # Events are the explicit ones below, not log lines


class NoEssence(kopf.DiffBaseStorage):
    """No diff base: the operator registers no on.create/on.update/on.resume handlers (only
    on.event and indexes, handlers.py), so kopf never compares an object with its last-handled
    essence. kopf's default storage still deep-copied every event's body to build one: half
    of kopf's time per event at 200 Societies (bench/operator_scale.py under py-spy)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> None:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        pass
