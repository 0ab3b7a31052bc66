"""The controller reads each Society from kopf's watch cache, never acting on a stale one: right
after its own status write the cache still holds the object that write replaced, and after a
conflict the newer object is unknown until the watch brings it (kube/controller.py). Driven with
a stand-in for the client and a dict for kopf's index; the real watch is in tests/cluster."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml

from society_operator.kube import controller as controller_module
from society_operator.kube import unseen
from society_operator.kube.client import Conflict
from society_operator.kube.config import OperatorConfig
from society_operator.kube.controller import Controller

from ..conftest import ROOT

KEY = ("research", "tiny")


class Cluster:
    """Records writes; answers a status write with the object at the next resourceVersion."""

    def __init__(self) -> None:
        self.status_writes: list[dict[str, Any]] = []  # the objects written from
        self.gets = 0
        self.conflicts = 0  # answer this many status writes with a conflict
        self.stored: dict[str, Any] | None = None
        self.created: list[str] = []

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict:
        self.status_writes.append(body)
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(body["metadata"]["name"])
        meta = body["metadata"]
        version = str(int(meta["resourceVersion"]) + 1)
        self.stored = {**body, "metadata": {**meta, "resourceVersion": version}, "status": status}
        return copy.deepcopy(self.stored)

    async def get_society(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return copy.deepcopy(self.stored)

    async def create(self, namespace: str, body: dict[str, Any]) -> bool:
        await asyncio.sleep(0)  # writes sent together interleave
        self.created.append(f"{body['kind']}/{body['metadata']['name']}")
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def world(monkeypatch):
    manifest = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    manifest["metadata"].update(namespace=KEY[0], uid="u-1", generation=1, resourceVersion="10")
    events: list[str] = []
    monkeypatch.setattr(
        controller_module.kopf, "event", lambda body, *, reason, **_: events.append(reason)
    )
    cluster = Cluster()
    cluster.stored = manifest
    controller = Controller(OperatorConfig(leader_election=False), cluster)  # type: ignore[arg-type]
    cache: dict[tuple[str, str], list[dict[str, Any]]] = {KEY: [manifest]}
    controller.indexes = {"societies": cache}
    return controller, cluster, cache, events


def reconcile(controller: Controller) -> None:
    asyncio.run(controller.reconcile(*KEY))


def test_right_after_its_own_write_it_reconciles_from_what_it_wrote(world):
    controller, cluster, cache, events = world
    reconcile(controller)
    assert len(cluster.status_writes) == 1 and events
    posted = len(events)
    # A child's event wakes the loop before the watch delivered the write: the cache still holds
    # resourceVersion 10. From it the reconcile would write again (a 409) and repeat the Events.
    reconcile(controller)
    assert len(cluster.status_writes) == 1 and len(events) == posted and cluster.gets == 0
    # The watch catches up: the cache is read again, still without a GET.
    cache[KEY] = [copy.deepcopy(cluster.stored)]
    reconcile(controller)
    assert len(cluster.status_writes) == 1 and cluster.gets == 0


def test_after_a_conflict_it_waits_for_the_watch_and_reads_once_only_if_nothing_came(world):
    controller, cluster, cache, events = world
    cluster.conflicts = 1
    with pytest.raises(Conflict):
        reconcile(controller)
    assert not events  # Events only after a write that succeeded
    stale = cache[KEY][0]["metadata"]["resourceVersion"]
    # The loop is woken by a Society event with a newer version, not by the stale one again.
    assert controller._waits_for(KEY, "11") and not controller._waits_for(KEY, stale)
    # Nothing newer came (a 409 that changed nothing): one GET, then on from what it returned.
    reconcile(controller)
    assert cluster.gets == 1 and len(cluster.status_writes) == 2 and events
    reconcile(controller)
    assert cluster.gets == 1 and len(cluster.status_writes) == 2


def test_after_a_conflict_a_newer_object_from_the_watch_is_used_without_a_get(world):
    controller, cluster, cache, events = world
    cluster.conflicts = 1
    with pytest.raises(Conflict):
        reconcile(controller)
    newer = copy.deepcopy(cache[KEY][0])
    newer["metadata"].update(resourceVersion="12", generation=2)
    newer["spec"]["suspend"] = True
    cluster.stored = newer
    cache[KEY] = [newer]
    reconcile(controller)
    assert cluster.gets == 0
    assert cluster.status_writes[-1]["metadata"]["resourceVersion"] == "12"
    assert cluster.stored["status"]["phase"] == "Suspended"


def test_the_api_key_and_policies_are_created_once_per_society(world, monkeypatch):
    """They are not watched, so each reconcile that finds no servers asks for them again: the
    process sends them once per Society (uid); the servers, watched, when they are missing and
    the watch has not just been behind the process's own create (kube/unseen.py)."""
    controller, cluster, cache, _ = world
    once = {"Secret/tiny-vllm-api-key", "NetworkPolicy/tiny-vllm", "NetworkPolicy/tiny-steps"}
    reconcile(controller)
    assert once <= set(cluster.created) and "Deployment/tiny-vllm" in cluster.created
    # The server reads the key: the first wave of writes is through before the server's.
    first = max(cluster.created.index(name) for name in once)
    assert cluster.created.index("Deployment/tiny-vllm") > first
    cluster.created.clear()
    cache[KEY] = [copy.deepcopy(cluster.stored)]
    reconcile(controller)  # the server's watch has not shown it yet: not sent again (no 409)
    assert cluster.created == []
    monkeypatch.setattr(unseen, "UNSEEN_SECONDS", -1.0)  # ... and has not shown it in time
    reconcile(controller)
    assert "Deployment/tiny-vllm" in cluster.created and not once & set(cluster.created)
    # A new Society of the same name (another uid) gets its own.
    controller.forget(*KEY)
    cluster.created.clear()
    renewed = copy.deepcopy(cluster.stored)
    renewed["metadata"]["uid"] = "u-2"
    cache[KEY] = [renewed]
    reconcile(controller)
    assert once <= set(cluster.created)


def test_a_society_is_validated_once_per_version(world, monkeypatch):
    controller, cluster, cache, events = world
    checked: list[tuple[str, str]] = []
    real = controller_module.check_society

    def counting(body: dict[str, Any]) -> Any:
        checked.append((body["metadata"]["uid"], body["metadata"]["resourceVersion"]))
        return real(body)

    monkeypatch.setattr(controller_module, "check_society", counting)
    for _ in range(4):  # woken by its children's events, four times
        reconcile(controller)
    # The first reconcile wrote a status (version 11), which the next ones read; each version
    # was validated once, however often it was reconciled.
    assert checked == [("u-1", "10"), ("u-1", "11")]
    # Another Society under the same name and version (deleted and made again) is validated.
    recreated = copy.deepcopy(cluster.stored)
    recreated["metadata"]["uid"] = "u-2"
    cache[KEY] = [recreated]
    reconcile(controller)
    assert checked[-1] == ("u-2", "11")


def test_a_finished_society_is_validated_at_each_reconcile_and_its_model_not_kept(
    world, monkeypatch
):
    """A finished Society changes no more and is reconciled about once a resync: keeping its
    validated model (some 24 KB) for each of them would cost more memory than it saves time."""
    controller, cluster, cache, events = world
    checked: list[str] = []
    real = controller_module.check_society

    def counting(body: dict[str, Any]) -> Any:
        checked.append(body["metadata"]["resourceVersion"])
        return real(body)

    monkeypatch.setattr(controller_module, "check_society", counting)
    finished = copy.deepcopy(cluster.stored)
    finished["status"] = {"phase": "Succeeded", "iteration": 2}
    cache[KEY] = [finished]
    cluster.stored = finished
    for _ in range(2):
        reconcile(controller)
        assert KEY not in controller._checked
    assert len(checked) == 2
