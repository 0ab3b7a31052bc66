"""The operator's handlers against the API emulator, for what a real apiserver with the project's
CRD cannot be made to show: a Society whose spec the operator's models reject (the emulator
applies no schema, like a cluster whose CRD is older than the operator). The lifecycle itself is
tested on the real control plane (tests/cluster/), the injected apiserver faults there too,
through a proxy (tests/cluster/test_injected_faults.py).
"""

from __future__ import annotations

from typing import Any

from .conftest import KubeClient

NS = "research"


def manifest(name: str, **spec: Any) -> dict:
    task = {"name": "arithmetic", "trainSize": 8, "evalSize": 8}
    return {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": {"name": "org/model"}, "task": task, "finetune": {"iterations": 2}}
        | spec,
    }


class Society:
    """One Society seen through the API."""

    def __init__(self, kube: KubeClient, name: str) -> None:
        self.kube, self.name = kube, name
        self.selector = f"society.dev/society={name}"

    def create(self, **spec: Any) -> Society:
        self.kube.create(manifest(self.name, **spec))
        return self

    def status(self) -> dict:
        return self.kube.get("Society", NS, self.name).get("status") or {}

    def wait_phase(self, phase: str, timeout: float = 10.0, iteration: int | None = None) -> dict:
        def reached() -> dict | None:
            status = self.status()
            ok = status.get("phase") == phase
            ok = ok and (iteration is None or status.get("iteration") == iteration)
            return status if ok else None

        return self.kube.wait_for(reached, f"{self.name} to be {phase}", timeout)

    def children(self, kind: str) -> list[dict]:
        return self.kube.list(kind, NS, label_selector=self.selector)

    def names(self, kind: str) -> list[str]:
        return sorted(obj["metadata"]["name"] for obj in self.children(kind))

    def events(self) -> list[str]:
        """Reasons of this Society's Events, oldest first."""
        events = self.kube.list("Event", NS)
        events = [e for e in events if e["involvedObject"]["name"] == self.name]
        events.sort(key=lambda event: int(event["metadata"]["resourceVersion"]))
        return [event["reason"] for event in events]

    def wait_events(self, expected: list[str], last: bool = False) -> None:
        """Wait until the Events (the `last` ones, or all) are `expected`: kopf posts them in
        the background, shortly after the status they describe."""

        def posted() -> bool:
            events = self.events()
            return (events[-len(expected) :] if last else events) == expected

        self.kube.wait_for(posted, f"the Events {expected}")

    def condition(self, kind: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)


def test_a_society_the_models_reject_fails_naming_the_field(kube, start_operator):
    """The emulator applies no schema, like a cluster whose CRD is older than the operator."""
    start_operator()
    Society(kube, "phi3").create(agents=0)
    society = Society(kube, "phi3")
    society.wait_phase("Failed")
    failed = society.condition("Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("invalid spec: spec.agents: ")
    society.wait_events(["InvalidSpec"])
    assert society.names("PersistentVolumeClaim") == [] and society.names("Deployment") == []
