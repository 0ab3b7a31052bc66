"""JSON requests to the apiserver through the official client's ApiClient, by path.

The operator sends a handful of requests (create, patch, delete, a Society's status, a Lease), and
reads answers as plain JSON. The client's generated API classes (CoreV1Api and the rest) would
cost a quarter of the operator's memory at start: importing them builds some 300 pydantic models
of the Kubernetes types (about 29 MiB resident), and every answer is validated into those models,
which nothing here reads. `Rest` uses the same ApiClient underneath -- its configuration,
credentials, TLS, connection pool and ApiException -- the way the client's own CustomObjectsApi
does: through ApiClient.param_serialize, call_api and response_deserialize.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kubernetes

from ..api import GROUP, PLURAL, VERSION

JSON = dict[str, Any]
# Kueue's Workloads (v1beta2: Kueue v0.15 and later).
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
# Every request has a deadline, (connect, read) seconds: a connection that died without a word
# (a node or load balancer gone, a stalled apiserver) would otherwise hold a thread forever.
# The apiserver ends a request itself at 60 s (its --request-timeout); a timed-out write is
# retried by the next reconcile, as any failed one.
REQUEST_TIMEOUT = (10.0, 75.0)

# The kinds the operator sends requests for: their API's path and their resource (plural).
RESOURCES = {
    "Job": ("/apis/batch/v1", "jobs"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Secret": ("/api/v1", "secrets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "Workload": (f"/apis/{KUEUE_GROUP}/{KUEUE_VERSION}", "workloads"),
    "Society": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}
# A patch merges into the object (RFC 7386): custom resources take no strategic merge patch.
MERGE_PATCH = "application/merge-patch+json"


def path(kind: str, namespace: str, name: str = "", subresource: str = "") -> str:
    """The path of a namespaced kind's collection, or of one object (and its subresource)."""
    api, plural = RESOURCES[kind]
    parts = [api, "namespaces", namespace, plural, name, subresource]
    return "/".join(part for part in parts if part)


class Rest:
    """Requests through one ApiClient; synchronous, like the client (callers use threads)."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api

    def request(
        self,
        method: str,
        url: str,
        *,
        body: JSON | None = None,
        query: Iterable[tuple[str, str]] = (),
        timeout: Any = REQUEST_TIMEOUT,
    ) -> JSON:
        """The answer's JSON; raises kubernetes.client.ApiException for any other status than
        2xx, as the client's API classes do."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH if method == "PATCH" else "application/json"
        request = self.api.param_serialize(
            method,
            url,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=timeout)
        response.read()
        return self.api.response_deserialize(response, {"2XX": "object"}).data
