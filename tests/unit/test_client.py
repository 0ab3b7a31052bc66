"""kube/client.py and kube/rest.py over the official client's REST layer (its request method
replaced by a recorder that answers as the apiserver would: no apiserver): each call goes to the
right path with the right method and content type, every request carries the client's deadline,
errors come back as the client's ApiException, and the Societies it returns are kept without
managedFields."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import kubernetes
import urllib3

from society_operator.kube.client import Cluster
from society_operator.kube.rest import REQUEST_TIMEOUT

SOCIETY = {"metadata": {"name": "tiny", "managedFields": [{"manager": "kubectl"}]}}
WORKLOADS = {"items": [{"metadata": {"name": "job-tiny-debate"}, "spec": {"active": True}}]}


def answering(monkeypatch, answers: dict[tuple[str, str], tuple[int, Any]]) -> list[tuple]:
    """Replace the REST layer: (method, path) -> (status, JSON body); record each request."""
    seen: list[tuple] = []

    def request(self, method, url, headers=None, body=None, post_params=None, **options):
        _, _, path, query, _ = urllib.parse.urlsplit(url)
        seen.append((method, path, query, headers, body, options.get("_request_timeout")))
        status, answer = answers[method, path]
        response = urllib3.HTTPResponse(
            body=json.dumps(answer).encode(),
            status=status,
            reason={200: "OK", 201: "Created", 409: "Conflict"}.get(status, "Error"),
            headers={"content-type": "application/json"},
        )
        return kubernetes.client.rest.RESTResponse(response)

    monkeypatch.setattr(kubernetes.client.rest.RESTClientObject, "request", request)
    return seen


def test_each_call_is_one_request_to_its_path_with_a_deadline(monkeypatch):
    society = "/apis/society.dev/v1alpha1/namespaces/ns/societies/tiny"
    workloads = "/apis/kueue.x-k8s.io/v1beta2/namespaces/ns/workloads"
    seen = answering(
        monkeypatch,
        {
            ("GET", society): (200, SOCIETY),
            ("PUT", f"{society}/status"): (200, SOCIETY),
            ("GET", workloads): (200, WORKLOADS),
            ("PATCH", f"{workloads}/job-tiny-debate"): (200, {}),
            ("POST", "/apis/batch/v1/namespaces/ns/jobs"): (201, {}),
            ("POST", "/api/v1/namespaces/ns/services"): (409, {"reason": "AlreadyExists"}),
            ("PATCH", "/apis/batch/v1/namespaces/ns/jobs/j"): (200, {}),
            ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d"): (404, {}),
            ("DELETE", "/api/v1/namespaces/ns/services/s"): (200, {}),
        },
    )
    cluster = Cluster(kubernetes.client.ApiClient())

    async def requests() -> list[Any]:
        return [
            await cluster.get_society("ns", "tiny"),
            await cluster.replace_status({"metadata": {"name": "tiny", "namespace": "ns"}}, {}),
            await cluster.set_queue_active("ns", "uid-1", False),  # a list, then a patch
            await cluster.create("ns", {"kind": "Job", "metadata": {"name": "j"}}),
            await cluster.create("ns", {"kind": "Service", "metadata": {"name": "s"}}),
            await cluster.suspend_job("ns", "j", True),
            await cluster.scale("ns", "d", 0),  # deleted meanwhile: not an error
            await cluster.delete("ns", "Service", "s"),
        ]

    try:
        got, written, active, created, existed, *_ = asyncio.run(requests())
    finally:
        cluster.close()
    assert got == written == {"metadata": {"name": "tiny"}}
    assert active is True and created is True and existed is False
    assert len(seen) == 9 and all(timeout == REQUEST_TIMEOUT for *_, timeout in seen), seen
    listing = next(query for method, path, query, *_ in seen if path == workloads)
    assert listing == "labelSelector=kueue.x-k8s.io/job-uid%3Duid-1"
    patches = [(h["Content-Type"], b) for m, _, _, h, b, _ in seen if m == "PATCH"]
    assert patches[0] == ("application/merge-patch+json", {"spec": {"active": False}})
    assert ("application/merge-patch+json", {"spec": {"suspend": True}}) in patches
    delete = next(q for m, _, q, *_ in seen if m == "DELETE")
    assert delete == "propagationPolicy=Background"
    created = next(body for method, path, _, _, body, _ in seen if path.endswith("/jobs"))
    assert created == {"kind": "Job", "metadata": {"name": "j"}}


def test_a_refused_request_raises_the_clients_api_exception_with_the_apiservers_words(
    monkeypatch,
):
    status = {"kind": "Status", "reason": "Forbidden", "message": "jobs is forbidden"}
    answering(monkeypatch, {("POST", "/apis/batch/v1/namespaces/ns/jobs"): (403, status)})
    cluster = Cluster(kubernetes.client.ApiClient())
    try:
        asyncio.run(cluster.create("ns", {"kind": "Job", "metadata": {"name": "j"}}))
    except kubernetes.client.ApiException as error:
        assert error.status == 403 and "jobs is forbidden" in error.body
    else:
        raise AssertionError("a 403 must raise")
    finally:
        cluster.close()
