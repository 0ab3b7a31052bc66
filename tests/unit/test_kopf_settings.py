"""The kopf settings that `society operator` runs with (kube/config.py)."""

from __future__ import annotations

import inspect

import kopf

from society_operator.kube.config import IDLE_WORKER_SECONDS, NoEssence, configure
from society_operator.kube.handlers import CHILD_RESOURCES, register


def test_no_handler_compares_an_object_with_its_last_handled_state():
    # NoEssence gives kopf an empty diff base, which is right only while no handler reacts to
    # changes (on.create, on.update, on.resume, on.field) or spawns daemons and timers: kopf
    # would then see no change and call them wrongly. This test fails when one is added.
    registry = kopf.OperatorRegistry()
    register(registry)
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    # What the operator does register: one Society event handler, a wake-up at the deletion of
    # each child kind but pods (handlers.py), and the indexes the reconciles read.
    assert len(registry._watching.get_all_handlers()) == 1 + len(CHILD_RESOURCES) - 1
    assert len(registry._indexing.get_all_handlers()) == 1 + len(CHILD_RESOURCES)


def test_the_operator_builds_no_diff_base():
    settings = kopf.OperatorSettings()
    configure(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoEssence)
    body = kopf.Body({"metadata": {"name": "a"}, "spec": {"big": ["x"] * 1000}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None


def test_idle_workers_let_go_of_the_last_body_soon():
    settings = kopf.OperatorSettings()
    assert settings.queueing.idle_timeout == 5.0  # kopf's default, which the operator shortens
    configure(settings)
    assert settings.queueing.idle_timeout == IDLE_WORKER_SECONDS < 1


def test_every_event_is_handled_in_the_event_loop_without_a_thread():
    # kopf runs a sync handler in its thread pool: for every event of every child a thread hop,
    # a copied context, a shielded future, and a thread contending for the GIL with the loop.
    registry = kopf.OperatorRegistry()
    register(registry)
    handlers = registry._indexing.get_all_handlers() + registry._watching.get_all_handlers()
    assert handlers
    sync = [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)]
    assert not sync, f"run in kopf's thread pool: {sync}"
