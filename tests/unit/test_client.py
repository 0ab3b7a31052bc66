"""kube/client.py against the official client's API classes (their methods replaced by
recorders: no apiserver): every request carries the client's deadline, and the Societies it
returns are kept without managedFields."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes

from society_operator.kube.client import REQUEST_TIMEOUT, Cluster

API = kubernetes.client


def test_every_request_has_a_deadline_and_societies_come_back_lean(monkeypatch):
    seen: list[tuple[str, Any]] = []

    def recorder(name: str, answer: Any):
        def call(self, *args: Any, **kwargs: Any) -> Any:
            seen.append((name, kwargs.get("_request_timeout")))
            return answer

        return call

    society = {"metadata": {"name": "tiny", "managedFields": [{"manager": "kubectl"}]}}
    workloads = {"items": [{"metadata": {"name": "job-tiny-debate"}, "spec": {"active": True}}]}
    for cls, method, answer in [
        (API.CustomObjectsApi, "get_namespaced_custom_object", society),
        (API.CustomObjectsApi, "replace_namespaced_custom_object_status", society),
        (API.CustomObjectsApi, "list_namespaced_custom_object", workloads),
        (API.CustomObjectsApi, "patch_namespaced_custom_object", {}),
        (API.BatchV1Api, "create_namespaced_job", {}),
        (API.BatchV1Api, "patch_namespaced_job", {}),
        (API.AppsV1Api, "patch_namespaced_deployment", {}),
        (API.CoreV1Api, "delete_namespaced_service", {}),
    ]:
        monkeypatch.setattr(cls, method, recorder(method, answer))
    cluster = Cluster(API.ApiClient())

    async def requests() -> list[Any]:
        return [
            await cluster.get_society("ns", "tiny"),
            await cluster.replace_status({"metadata": {"name": "tiny", "namespace": "ns"}}, {}),
            await cluster.set_queue_active("ns", "uid-1", False),  # a list, then a patch
            await cluster.create("ns", {"kind": "Job", "metadata": {"name": "j"}}),
            await cluster.suspend_job("ns", "j", True),
            await cluster.scale("ns", "d", 0),
            await cluster.delete("ns", "Service", "s"),
        ]

    try:
        got, written, active, *_ = asyncio.run(requests())
    finally:
        cluster.close()
    assert len(seen) == 8 and all(timeout == REQUEST_TIMEOUT for _, timeout in seen), seen
    assert got == written == {"metadata": {"name": "tiny"}} and active is True
