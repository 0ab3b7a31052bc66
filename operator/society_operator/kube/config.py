"""How an operator process runs: its options (the `society operator` flags, or the environment
the chart's Deployment sets) and the kopf settings a long-lived operator needs."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..settings import Settings
from .leader import LeaseTimings


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
