"""A child's event wakes its Society only when it changed what a reconcile reads (kube/changes.py),
through the handlers kopf calls: the index function, then the event handler."""

from __future__ import annotations

import asyncio
import copy

import kopf

from society_operator.kube.handlers import register

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "s-debate-it0-abcde",
        "namespace": "research",
        "uid": "pod-1",
        "labels": {"society.dev/society": "s", "batch.kubernetes.io/job-name": "s-debate-it0"},
        "resourceVersion": "1",
    },
    "spec": {"containers": [{"name": "debate"}]},
    "status": {"phase": "Pending"},
}


class Owners:
    def __init__(self) -> None:
        self.woken: list[tuple[str, str]] = []

    def wake(self, namespace: str, name: str) -> None:
        self.woken.append((namespace, name))


def deliver(registry, memo, kind: str | None, body: dict) -> None:
    """As kopf does for one pod event: the index function (not for DELETED), then the handler."""
    pods = next(r for r in registry._indexing.get_all_handlers() if r.id == "society_pods")
    wake = next(r for r in registry._watching.get_all_handlers() if r.id == "wake_on_pods")
    meta = body["metadata"]
    kwargs = dict(
        namespace=meta["namespace"],
        labels=meta["labels"],
        uid=meta["uid"],
        body=kopf.Body(body),
        memo=memo,
    )
    if kind != "DELETED":
        asyncio.run(pods.fn(**kwargs))
    asyncio.run(wake.fn(type=kind, **kwargs))


def test_only_events_that_change_what_observe_reads_wake_the_society():
    registry = kopf.OperatorRegistry()
    register(registry)
    owners = Owners()
    memo = kopf.Memo(controller=owners)
    pod = copy.deepcopy(POD)

    deliver(registry, memo, None, pod)  # first seen (a listing): wakes
    assert len(owners.woken) == 1
    pod["spec"]["nodeName"] = "gpu-1"  # bound by the scheduler: nothing observe reads
    pod["metadata"]["annotations"] = {"a": "b"}
    pod["metadata"]["resourceVersion"] = "2"
    deliver(registry, memo, "MODIFIED", pod)
    assert len(owners.woken) == 1
    pod["status"]["containerStatuses"] = [
        {"state": {"terminated": {"finishedAt": "2026-12-03T12:00:00Z", "message": "{}"}}}
    ]
    deliver(registry, memo, "MODIFIED", pod)  # the step's result: wakes
    assert len(owners.woken) == 2
    deliver(registry, memo, "MODIFIED", pod)  # the same again (a re-listed watch): does not
    assert len(owners.woken) == 2
    deliver(registry, memo, "DELETED", pod)  # gone: wakes
    assert owners.woken == [("research", "s")] * 3
    deliver(registry, memo, "ADDED", copy.deepcopy(POD))  # made anew (same uid here): wakes
    assert len(owners.woken) == 4
