"""The kopf registrations, thin: they feed the controller (controller.py) and nothing else.

`register(registry)` attaches every handler to a registry; `run()` (what `society operator`
does) registers them in a fresh one and runs kopf. Importing this module registers nothing.
Handlers are async so that they run in kopf's event loop, where the controller's loops live
(sync ones would run in kopf's thread pool).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

import kopf

from ..api import GROUP, PLURAL, VERSION
from ..build.names import LABEL_SOCIETY
from ..core.observe import interned, project
from .changes import changed
from .client import Cluster, kept
from .config import OperatorConfig, configure
from .controller import Controller

logger = logging.getLogger(__name__)

# How long the process may take to end once kopf has stopped. Python joins the client's threads
# at exit, and one may still wait on a request that gets no answer (a half-dead connection: up
# to the client's REQUEST_TIMEOUT). Every write is idempotent and the next process reconciles
# from what is there, so such requests are abandoned rather than waited for: the kubelet
# restarts a failed operator without delay, and a stopped one ends within its grace period.
EXIT_GRACE_SECONDS = 5.0

# The children kinds the operator indexes, as kopf names them: (group, version, plural).
CHILD_RESOURCES = (
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "pods"),
    ("", "v1", "persistentvolumeclaims"),
)


def _index_id(plural: str) -> str:
    return f"society_{plural}"  # also the keyword under which kopf passes the index to handlers


# The index functions are async though they never await: kopf runs a sync handler in its
# thread pool, which for every event of every child cost a thread hop, a copied context and a
# shielded future, and a thread contending for the GIL with the event loop.


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


async def _by_name(namespace: str | None, name: str, body: Any, **_: Any) -> Any:
    return {(namespace, name): interned(kept(dict(body)))}


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry)
    async def start_controller(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        config = memo.get("config") or OperatorConfig.from_env()
        configure(settings, CHILD_RESOURCES if config.watch_selectors else ())
        memo["controller"] = controller = Controller(config, Cluster.from_environment())
        await controller.start()

    @kopf.on.cleanup(registry=registry)
    async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
        if "controller" in memo:
            await memo["controller"].stop()

    @kopf.on.probe(id="leading", registry=registry)
    async def leading(memo: kopf.Memo, **_: Any) -> bool:
        try:
            memo["controller"].check_alive()
        except RuntimeError as error:  # /healthz answers 500: the pod is restarted
            raise kopf.PermanentError(str(error)) from error
        return memo["controller"].leading

    # The Societies too: a reconcile reads its Society here, not with a GET (controller.py).
    kopf.index(GROUP, VERSION, PLURAL, id=_index_id("societies"), registry=registry)(_by_name)
    ours = {LABEL_SOCIETY: kopf.PRESENT}

    async def by_society(
        namespace: str | None, labels: dict[str, str], body: Any, memo: kopf.Memo, **_: Any
    ) -> Any:
        key = (namespace, labels[LABEL_SOCIETY])
        projected = project(body)  # only what observe() reads: a whole pod is ten times that
        if changed(memo, projected):  # else the reconcile would decide the same (changes.py)
            # Woken here rather than from an event handler, which would cost kopf a second
            # handler run per event (a third of its time per event): kopf puts what this
            # returns into the index before anything else runs (no await in between, in
            # indexing.index_resource), so the loop woken reads it. Checked by
            # test_child_changes.py::test_a_woken_society_reads_the_event_that_woke_it.
            memo["controller"].wake(*key)
        return {key: projected}

    for group, version, plural in CHILD_RESOURCES:
        kopf.index(group, version, plural, labels=ours, id=_index_id(plural), registry=registry)(
            by_society
        )
        if plural == "pods":
            # kopf calls no index function for a deletion, only event handlers, which cost it
            # as much as the index itself at each of the kind's events. Pods are most of the
            # children's events, and a pod's deletion needs no wake of its own: its Job or
            # ReplicaSet counts it or replaces it (an event of the Job, or a new pod), or it
            # goes with its deleted owner, whose deletion wakes the Society.
            continue

        @kopf.on.event(
            group,
            version,
            plural,
            labels=ours,
            when=_deleted,
            id=f"wake_on_deleted_{plural}",
            registry=registry,
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
        for plural in ("societies", *(plural for _, _, plural in CHILD_RESOURCES)):
            controller.indexes[plural] = kwargs[_index_id(plural)]
        controller.seen(
            meta["namespace"], meta["name"], meta.get("generation"), meta.get("resourceVersion")
        )


def run(
    config: OperatorConfig,
    *,
    namespaces: Iterable[str] = (),
    health_port: int | None = 8080,
    verbose: bool = False,
) -> None:
    """Run the operator in this process until SIGTERM or SIGINT (what `society operator` does)."""
    namespaces = list(namespaces)
    # The client's threads and the event loop share the GIL: a thread whose answer has come
    # waits for the loop to let go of it, up to the switch interval (5 ms by default) each time.
    sys.setswitchinterval(0.001)
    kopf.configure(verbose=verbose)
    if not verbose:
        # kopf says "Handler 'society_event' succeeded." for every event of every Society (and
        # at --verbose "Handler 'society_pods' succeeded." for every child's): when each child's
        # event ran a handler, a twentieth of the operator's time at 200 Societies. What a
        # Society does is in its Events and this package's own log lines; kopf's warnings and
        # errors (a handler that failed) still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    registry = kopf.OperatorRegistry()
    # kopf's global registry logs in by itself; a registry of our own must say how: as the
    # kubernetes client does (in-cluster ServiceAccount, else $KUBECONFIG), like Cluster.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    register(registry)
    liveness = f"http://0.0.0.0:{health_port}/healthz" if health_port else None
    settings = kopf.OperatorSettings()
    if namespaces and not any(set("*?[!") & set(ns) for ns in namespaces):
        # Named namespaces need no discovery. Scanning would list all namespaces, which the
        # chart's namespaced RBAC forbids: kopf then retries for a minute before acting.
        settings.scanning.disabled = True
    asyncio.run(
        _until_kopf_ends(
            registry=registry,
            settings=settings,
            memo=kopf.Memo(config=config),
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness,
        )
    )


async def _until_kopf_ends(**operator: Any) -> None:
    try:
        await kopf.operator(**operator)
    except BaseException:
        _exit_after(EXIT_GRACE_SECONDS, code=1)
        raise
    _exit_after(EXIT_GRACE_SECONDS, code=0)


def _exit_after(seconds: float, code: int) -> None:
    """End the process with `code` in `seconds` if it has not ended by itself (see
    EXIT_GRACE_SECONDS); a daemon timer, so an exit on time is not held up by it."""

    def abandon() -> None:
        logger.warning(
            "requests still unanswered %.0fs after the operator stopped: abandoned", seconds
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(seconds, abandon)
    timer.daemon = True
    timer.start()
