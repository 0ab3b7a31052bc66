"""The operator's writes to the apiserver, through the official kubernetes client.

Reads come from kopf's watch caches (indexes, see handlers.py), so this module only writes:
children, scale and suspend patches, and the status (and reads a Society after a conflict that
the watch has not explained, controller.py). Every write is idempotent against a retry or a
stale cache: creating what exists and deleting what is gone are no-ops, and the status is
replaced under the resourceVersion it was computed from.

The client is synchronous; calls run in a bounded thread pool so that the event loop (kopf's
watches, the liveness endpoint) never waits on the network.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes

from .. import __version__
from .rest import Rest, path

# Kueue labels each Workload with the uid of its Job.
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"
USER_AGENT = f"society-operator/{__version__}"
# Requests in flight at once, in two lanes. Services' creates and deletes take seconds on a busy
# apiserver, even those answered 409 (it allocates or frees a ClusterIP first, one Service after
# another), so more of them at once only queue there, past its timeout (504); in the one lane of
# 16 threads they held up every other Society's writes queued behind them
# (bench/operator_scale.py at 200 Societies: a Job's create waited 4 s; docs/benchmarks.md).
THREADS, SLOW_THREADS = 64, 16
SLOW_KINDS = ("Service",)
JSON = dict[str, Any]


class Conflict(Exception):
    """The Society changed since it was read; reconcile again from the new version."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new may be created in it, and its Societies go
    with it. Not an error to retry, nor to log with a traceback."""


def kept(society: JSON) -> JSON:
    """A Society as the operator keeps it (its watch cache, a write's answer): without
    metadata.managedFields, which nothing reads and which grows with every field of the status.
    A status write that leaves it out keeps the apiserver's."""
    meta = society["metadata"]
    if "managedFields" not in meta:
        return society
    return {**society, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _terminating(error: kubernetes.client.ApiException) -> bool:
    # The apiserver's NamespaceLifecycle admission: 403 Forbidden, cause NamespaceTerminating;
    # once the namespace is gone, 404 NotFound naming the namespace.
    body = error.body or ""
    if error.status == 403:
        return "NamespaceTerminating" in body
    return error.status == 404 and '"kind":"namespaces"' in body.replace(" ", "")


class Cluster:
    def __init__(self, api: kubernetes.client.ApiClient, threads: int = THREADS) -> None:
        self.api = api
        self.rest = Rest(api)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="kube")
        self._slow_pool = ThreadPoolExecutor(SLOW_THREADS, thread_name_prefix="kube-slow")

    @classmethod
    def from_environment(cls, threads: int = THREADS) -> Cluster:
        """In-cluster credentials in a pod, else $KUBECONFIG or ~/.kube/config."""
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)
        except kubernetes.config.ConfigException:
            # Read $KUBECONFIG now: the client's default was fixed when it was imported.
            path = os.environ.get("KUBECONFIG") or "~/.kube/config"
            kubernetes.config.load_kube_config(config_file=path, client_configuration=config)
        config.connection_pool_maxsize = threads + SLOW_THREADS  # both lanes
        api = kubernetes.client.ApiClient(config)
        api.user_agent = USER_AGENT  # names the operator in audit logs and apiserver metrics
        return cls(api, threads)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._slow_pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    async def _request(self, method: str, url: str, kind: str = "", **options: Any) -> JSON:
        """`Rest.request` in a thread of the kind's lane."""
        pool = self._slow_pool if kind in SLOW_KINDS else self._pool
        loop = asyncio.get_running_loop()
        call = functools.partial(self.rest.request, method, url, **options)
        return await loop.run_in_executor(pool, call)

    async def get_society(self, namespace: str, name: str) -> JSON | None:
        try:
            society = await self._request("GET", path("Society", namespace, name))
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return kept(society)

    async def create(self, namespace: str, body: JSON) -> bool:
        """Create a child; False if it already exists (a stale cache, or a restart). Raises
        NamespaceTerminating when the namespace is being deleted."""
        kind = body["kind"]
        try:
            await self._request("POST", path(kind, namespace), kind, body=body)
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return False
            if _terminating(error):
                raise NamespaceTerminating(namespace) from None
            raise
        return True

    async def delete(self, namespace: str, kind: str, name: str) -> bool:
        """Delete a child, its dependents in the background; False if it was already gone."""
        background = [("propagationPolicy", "Background")]
        try:
            await self._request("DELETE", path(kind, namespace, name), kind, query=background)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        await self._patch("Deployment", namespace, name, {"spec": {"replicas": replicas}})

    async def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        await self._patch("Job", namespace, name, {"spec": {"suspend": suspend}})

    async def set_queue_active(self, namespace: str, job_uid: str, active: bool) -> bool:
        """Set spec.active of the Kueue Workload of the Job with this uid (false: Kueue evicts
        it and suspends the Job, and admits nothing of it until it is true again). False when
        there is no such Workload yet (Kueue has not made it, or is not installed)."""
        selector = [("labelSelector", f"{KUEUE_JOB_UID}={job_uid}")]
        try:
            listed = await self._request("GET", path("Workload", namespace), query=selector)
        except kubernetes.client.ApiException as error:
            if error.status == 404:  # no Workload resource: Kueue is not installed
                return False
            raise
        for workload in listed["items"]:
            if (workload.get("spec") or {}).get("active", True) != active:
                name = workload["metadata"]["name"]
                await self._patch("Workload", namespace, name, {"spec": {"active": active}})
        return bool(listed["items"])

    async def _patch(self, kind: str, namespace: str, name: str, patch: JSON) -> None:
        """A child deleted meanwhile (by a user, or with its namespace) is not an error: the
        next reconcile sees it gone."""
        try:
            await self._request("PATCH", path(kind, namespace, name), kind, body=patch)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    async def replace_status(self, society: JSON, status: JSON) -> JSON:
        """Write the whole status, guarded by the resourceVersion `society` was read at."""
        meta = society["metadata"]
        body = {**society, "status": status}  # metadata.resourceVersion included
        url = path("Society", meta["namespace"], meta["name"], "status")
        try:
            written = await self._request("PUT", url, body=body)
        except kubernetes.client.ApiException as error:
            # 404: deleted since it was read (with its namespace, say): read it again.
            if error.status in (404, 409):
                raise Conflict(meta["name"]) from error
            raise
        return kept(written)
