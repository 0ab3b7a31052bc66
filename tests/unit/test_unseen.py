"""kube/unseen.py: a reconcile does not create again a child the watch has not shown yet, and
forgets it once shown, deleted, or not shown in time; kube/client.kept."""

from __future__ import annotations

from society_operator.kube.client import kept
from society_operator.kube.unseen import UNSEEN_SECONDS, Unseen


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache(**plurals: list[str]):
    return lambda plural: [{"metadata": {"name": n}} for n in plurals.get(plural, [])]


def test_a_child_made_is_skipped_until_the_watch_shows_it_then_forgotten():
    clock = Clock()
    unseen = Unseen(clock)
    unseen.made("Job", "tiny-debate-it0")
    unseen.forget_seen(cache())  # the watch is behind: keep it
    assert ("Job", "tiny-debate-it0") in unseen
    unseen.forget_seen(cache(jobs=["tiny-debate-it0"]))
    assert ("Job", "tiny-debate-it0") not in unseen  # a later delete is seen as one


def test_one_the_watch_never_shows_is_asked_for_again_in_time():
    clock = Clock()
    unseen = Unseen(clock)
    unseen.made("Deployment", "tiny-vllm")
    clock.now += UNSEEN_SECONDS - 1
    unseen.forget_seen(cache(jobs=["tiny-vllm"]))  # another kind of the same name is not it
    assert ("Deployment", "tiny-vllm") in unseen
    clock.now += 2
    unseen.forget_seen(cache())
    assert ("Deployment", "tiny-vllm") not in unseen


def test_a_delete_forgets_and_unwatched_kinds_are_never_held():
    unseen = Unseen(Clock())
    unseen.made("Service", "tiny-vllm")
    unseen.deleted("Service", "tiny-vllm")  # the next iteration's Service of the same name
    assert ("Service", "tiny-vllm") not in unseen
    unseen.made("Secret", "tiny-vllm-api-key")  # not watched: the controller's _made says
    assert ("Secret", "tiny-vllm-api-key") not in unseen


def test_kept_drops_managed_fields_only():
    body = {
        "metadata": {"name": "a", "resourceVersion": "7", "managedFields": [{"manager": "x"}]},
        "spec": {"agents": 3},
        "status": {"phase": "Training"},
    }
    lean = kept(body)
    assert lean == {
        "metadata": {"name": "a", "resourceVersion": "7"},
        "spec": {"agents": 3},
        "status": {"phase": "Training"},
    }
    assert "managedFields" in body["metadata"]  # the cached original is not changed
    assert kept(lean) is lean
