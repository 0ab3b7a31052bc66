"""What kopf costs the operator for each event of a Society's child, in the operator's process.

At 1000 Societies the operator handles some 90 000 watch events of Jobs, pods, Deployments and
Services (docs/benchmarks.md); each goes through kopf's handling (`process_resource_event`): its
per-object memory, the index functions, and the event handlers registered for the kind. This
drives events through that same function with the operator's own registrations
(`kube/handlers.register`), without a cluster, and prints the time per event: pods, whose
deletions need no handler (handlers.py), and Jobs, which keep one for their deletion. An event
either changes what `observe` reads (a new phase: the Society is woken) or not (a pod bound to a
node). kopf's internals (1.45), as tests/unit/test_child_changes.py uses them.

    .venv/bin/python bench/kopf_events.py                            # docs/benchmarks.md
    .venv/bin/python bench/kopf_events.py --events 200 --rounds 1    # the CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import time
from typing import Any

import kopf
from kopf._cogs.structs import references
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from society_operator.kube.config import configure
from society_operator.kube.handlers import register

LABELS = {"society.dev/society": "s"}
KINDS = {
    "pods": (
        references.Resource("", "v1", "pods", kind="Pod", namespaced=True),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "s-debate-it0-x", "namespace": "bench", "labels": LABELS},
            "spec": {"containers": [{"name": "debate"}]},
            "status": {"phase": "Pending"},
        },
    ),
    "jobs": (
        references.Resource("batch", "v1", "jobs", kind="Job", namespaced=True),
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "s-debate-it0", "namespace": "bench", "labels": LABELS},
            "spec": {"suspend": False},
            "status": {"active": 0},
        },
    ),
}


class Controller:
    """Stands in for the operator's controller: counts the Societies woken."""

    woken = 0

    def wake(self, namespace: str, name: str) -> None:
        self.woken += 1


def events(plural: str, n: int, changing: bool) -> list[dict[str, Any]]:
    """n MODIFIED events of 100 objects of a kind, each either changing what `observe` reads
    (`status.active`, a pod's `status.phase`) or only what it does not (`spec.nodeName`)."""
    _, template = KINDS[plural]
    made = []
    for i in range(n):
        body = copy.deepcopy(template)
        body["metadata"] |= {"uid": f"{plural}-{i % 100}", "resourceVersion": str(i)}
        if changing:
            if plural == "pods":
                body["status"]["phase"] = ("Pending", "Running")[i // 100 % 2]
            else:
                body["status"]["active"] = i // 100 % 2
        else:
            body["spec"]["nodeName"] = f"node-{i}"
        made.append({"type": "MODIFIED", "object": body})
    return made


async def time_events(plural: str, raw_events: list[dict[str, Any]]) -> tuple[float, int]:
    """Seconds per event through kopf's handling, and how many woke a Society."""
    registry = kopf.OperatorRegistry()
    register(registry)
    settings = kopf.OperatorSettings()
    configure(settings)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    memories, controller = inventory.ResourceMemories(), Controller()
    memo = kopf.Memo(controller=controller)
    resource, queue = KINDS[plural][0], asyncio.Queue()

    async def handle(raw_event: dict[str, Any]) -> None:
        await processing.process_resource_event(
            lifecycle=kopf.lifecycles.all_at_once,
            indexers=indexers,
            registry=registry,
            settings=settings,
            memories=memories,
            memobase=memo,
            resource=resource,
            raw_event=raw_event,
            event_queue=queue,
        )

    for raw_event in raw_events[:100]:  # each object seen once: its memory and index entry
        await handle(raw_event)
    controller.woken = 0
    started = time.perf_counter()
    for raw_event in raw_events[100:]:
        await handle(raw_event)
    return (time.perf_counter() - started) / (len(raw_events) - 100), controller.woken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="per kind and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.events} events per row and round, {args.rounds} rounds")
    print()
    print("| child | event | us per event (min) | (median) | Societies woken per event |")
    print("|---|---|---:|---:|---:|")
    for plural in KINDS:
        for changing in (False, True):
            raw_events = events(plural, args.events + 100, changing)
            times, woken = [], 0
            for _ in range(args.rounds):
                seconds, woken = asyncio.run(time_events(plural, copy.deepcopy(raw_events)))
                times.append(seconds * 1e6)
            what = "changes what observe reads" if changing else "changes nothing it reads"
            print(
                f"| {plural} | {what} | {min(times):.0f} | {statistics.median(times):.0f} "
                f"| {woken / args.events:.2f} |"
            )


if __name__ == "__main__":
    main()
