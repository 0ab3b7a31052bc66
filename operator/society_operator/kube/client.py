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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes

from .. import __version__
from ..api import GROUP, PLURAL, VERSION

T = TypeVar("T")
# Kueue's Workloads (v1beta2: Kueue v0.15 and later), each labelled with the uid of its Job.
KUEUE_GROUP, KUEUE_VERSION, WORKLOADS = "kueue.x-k8s.io", "v1beta2", "workloads"
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"
USER_AGENT = f"society-operator/{__version__}"
# Requests in flight at once, in two lanes. Services' creates and deletes take seconds on a busy
# apiserver, even those answered 409 (it allocates or frees a ClusterIP first, one Service after
# another), so more of them at once only queue there, past its timeout (504); in the one lane of
# 16 threads they held up every other Society's writes queued behind them
# (bench/operator_scale.py at 200 Societies: a Job's create waited 4 s; docs/benchmarks.md).
THREADS, SLOW_THREADS = 64, 16
SLOW_KINDS = ("Service",)
# Every request has a deadline, (connect, read) seconds: a connection that died without a word
# (a node or load balancer gone, a stalled apiserver) would otherwise hold a thread forever.
# The apiserver ends a request itself at 60 s (its --request-timeout); a timed-out write is
# retried by the next reconcile, as any failed one.
REQUEST_TIMEOUT = (10.0, 75.0)
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
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.coordination = kubernetes.client.CoordinationV1Api(api)
        self.networking = kubernetes.client.NetworkingV1Api(api)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="kube")
        self._slow_pool = ThreadPoolExecutor(SLOW_THREADS, thread_name_prefix="kube-slow")
        self._create: dict[str, Callable[..., Any]] = {
            "Job": self.batch.create_namespaced_job,
            "Deployment": self.apps.create_namespaced_deployment,
            "Service": self.core.create_namespaced_service,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
            "Secret": self.core.create_namespaced_secret,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
        }
        self._delete: dict[str, Callable[..., Any]] = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
        }

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

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._call_in(self._pool, fn, *args, **kwargs)

    async def _call_in(
        self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    def _lane(self, kind: str) -> ThreadPoolExecutor:
        return self._slow_pool if kind in SLOW_KINDS else self._pool

    async def get_society(self, namespace: str, name: str) -> JSON | None:
        try:
            society = await self._call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return kept(society)

    async def create(self, namespace: str, body: JSON) -> bool:
        """Create a child; False if it already exists (a stale cache, or a restart). Raises
        NamespaceTerminating when the namespace is being deleted."""
        try:
            kind = body["kind"]
            await self._call_in(self._lane(kind), self._create[kind], namespace, body)
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return False
            if _terminating(error):
                raise NamespaceTerminating(namespace) from None
            raise
        return True

    async def delete(self, namespace: str, kind: str, name: str) -> bool:
        """Delete a child, its dependents in the background; False if it was already gone."""
        try:
            await self._call_in(
                self._lane(kind),
                self._delete[kind],
                *(name, namespace),
                propagation_policy="Background",
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        patch = {"spec": {"replicas": replicas}}
        await self._patch(self.apps.patch_namespaced_deployment, name, namespace, patch)

    async def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        patch = {"spec": {"suspend": suspend}}
        await self._patch(self.batch.patch_namespaced_job, name, namespace, patch)

    async def set_queue_active(self, namespace: str, job_uid: str, active: bool) -> bool:
        """Set spec.active of the Kueue Workload of the Job with this uid (false: Kueue evicts
        it and suspends the Job, and admits nothing of it until it is true again). False when
        there is no such Workload yet (Kueue has not made it, or is not installed)."""
        try:
            listed = await self._call(
                self.custom.list_namespaced_custom_object,
                *(KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS),
                label_selector=f"{KUEUE_JOB_UID}={job_uid}",
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:  # no Workload resource: Kueue is not installed
                return False
            raise
        for workload in listed["items"]:
            if (workload.get("spec") or {}).get("active", True) != active:
                name = workload["metadata"]["name"]
                patch = {"spec": {"active": active}}
                await self._patch(self._patch_workload, name, namespace, patch)
        return bool(listed["items"])

    def _patch_workload(self, name: str, namespace: str, patch: JSON, **options: Any) -> Any:
        return self.custom.patch_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS, name, patch, **options
        )

    async def _patch(self, fn: Callable[..., Any], name: str, namespace: str, patch: JSON) -> None:
        """A child deleted meanwhile (by a user, or with its namespace) is not an error: the
        next reconcile sees it gone."""
        try:
            await self._call(fn, name, namespace, patch)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    async def replace_status(self, society: JSON, status: JSON) -> JSON:
        """Write the whole status, guarded by the resourceVersion `society` was read at."""
        meta = society["metadata"]
        body = {**society, "status": status}  # metadata.resourceVersion included
        try:
            written = await self._call(
                self.custom.replace_namespaced_custom_object_status,
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                body,
            )
        except kubernetes.client.ApiException as error:
            # 404: deleted since it was read (with its namespace, say): read it again.
            if error.status in (404, 409):
                raise Conflict(meta["name"]) from error
            raise
        return kept(written)
