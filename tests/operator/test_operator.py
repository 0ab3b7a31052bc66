"""The operator's handlers against the API emulator: the whole lifecycle, as a cluster would run it.

The test plays the user (kubectl), the kubelet (server readiness) and the Job controller (pods that
terminate with the trainer's summary as their termination message); the operator is the real one,
registered into a fresh kopf registry and started as its pod would be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes_validate
import pytest

from society_operator.handlers import OperatorConfig, register

from .conftest import KubeClient, OperatorThread

NS = "research"
K8S_VERSION = "1.33"
ROLES = ("generation", "critic")


def manifest(name: str, **spec: Any) -> dict:
    task = {"name": "arithmetic", "trainSize": 8, "evalSize": 8}
    return {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": {"name": "org/model"}, "task": task, "finetune": {"iterations": 2}}
        | spec,
    }


def summary(accuracy: float, agents: int = 3) -> str:
    datasets = [
        {"agent": n, "role": role, "examples": 4 + n} for n in range(agents) for role in ROLES
    ]
    evaluation = {"questions": 8, "accuracy": accuracy, "accuracyStderr": 0.1, "consensus": 0.9}
    return json.dumps({"eval": evaluation | {"diversity": 0.2}, "datasets": datasets})


class Society:
    """One Society seen through the API, and the kubelet's and Job controller's part in its run."""

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

    def wait_names(self, kind: str, names: list[str], timeout: float = 10.0) -> None:
        self.kube.wait_for(lambda: self.names(kind) == sorted(names), f"{kind}s {names}", timeout)

    def servers_ready(self) -> None:
        for deployment in self.children("Deployment"):
            status = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
            self.kube.patch_status("Deployment", NS, deployment["metadata"]["name"], status)

    def training_jobs(self, iteration: int) -> list[str]:
        return sorted(
            job["metadata"]["name"]
            for job in self.children("Job")
            if job["metadata"]["labels"].get("society.dev/role") in ROLES
            and job["metadata"]["labels"]["society.dev/iteration"] == str(iteration)
        )

    def events(self) -> list[str]:
        """Reasons of this Society's Events, oldest first."""
        events = self.kube.list("Event", NS)
        events = [e for e in events if e["involvedObject"]["name"] == self.name]
        events.sort(key=lambda event: int(event["metadata"]["resourceVersion"]))
        return [event["reason"] for event in events]

    def condition(self, kind: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)


@pytest.fixture
def start_operator(
    kopf_registry: kopf.OperatorRegistry, running_operator: Callable[..., OperatorThread]
) -> Callable[..., OperatorThread]:
    """Start (and again, after a stop) the real operator; its config can be overridden."""
    register(kopf_registry)

    def start(**config: Any) -> OperatorThread:
        config = {"resync_seconds": 1.0, "leader_election": False} | config
        return running_operator(memo=kopf.Memo(config=OperatorConfig(**config)))

    return start


def test_a_society_runs_two_iterations_to_succeeded(kube, start_operator):
    start_operator()
    society = Society(kube, "phi3").create()
    status = society.wait_phase("Serving")
    assert status["iteration"] == 0 and status["children"]["servers"] == ["phi3-vllm"]
    assert society.names("PersistentVolumeClaim") == ["phi3-artifacts"]
    assert society.names("Deployment") == society.names("Service") == ["phi3-vllm"]
    assert society.names("Job") == []  # nothing debates before the servers are ready

    accuracies = [0.5, 0.625, 0.75]
    for iteration, accuracy in enumerate(accuracies):
        society.servers_ready()
        society.wait_phase("Debating", iteration=iteration)
        debate = f"phi3-debate-it{iteration}"
        assert society.status()["children"]["debateJob"] == debate
        kube.finish_job(NS, debate, termination_message=summary(accuracy), seconds=100)
        if iteration == len(accuracies) - 1:
            break
        status = society.wait_phase("Training")
        society.wait_names("Deployment", [])  # the GPUs go to training
        society.wait_names("Service", [])
        trained = iteration + 1
        expected = [f"phi3-train-{r}-{n}-it{trained}" for n in range(3) for r in ("gen", "critic")]
        assert society.training_jobs(trained) == sorted(expected)
        assert status["children"]["trainingJobs"] == expected
        for job in expected:
            kube.finish_job(NS, job, seconds=50)
        society.wait_phase("Serving", iteration=trained)
        society.wait_names("Deployment", ["phi3-vllm"])
        server = kube.get("Deployment", NS, "phi3-vllm")
        assert server["metadata"]["labels"]["society.dev/iteration"] == str(trained)
        args = server["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"gen-0-it{trained}=/artifacts/phi3/models/gen-0-it{trained}" in args

    status = society.wait_phase("Succeeded")
    society.wait_names("Deployment", [])
    assert [entry["accuracy"] for entry in status["iterations"]] == accuracies
    assert status["accuracy"] == 0.75 and status["iteration"] == 2
    first = status["iterations"][0]
    assert first["accuracyStderr"] == 0.1 and first["consensus"] == 0.9
    assert {"agent": 2, "role": "critic", "examples": 6} in first["datasets"]
    # 12 training Jobs of 50 s on 1 GPU each; the debate Jobs are CPU clients of the servers,
    # whose pods never ran here.
    assert status["gpuSeconds"] == 600
    assert society.condition("Ready")["status"] == "True"
    assert society.condition("Progressing")["status"] == "False"
    assert society.condition("Failed")["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert len(society.names("Job")) == 3 + 12  # Jobs stay, with their logs, until deletion

    assert society.events() == [
        "ServersStarting",
        "Debating",
        "IterationEvaluated",
        "Training",
        "IterationTrained",
        "ServersStarting",
        "Debating",
        "IterationEvaluated",
        "Training",
        "IterationTrained",
        "ServersStarting",
        "Debating",
        "IterationEvaluated",
        "Succeeded",
    ]
    children = [obj for kind in ("Job", "PersistentVolumeClaim") for obj in society.children(kind)]
    for child in children:
        kubernetes_validate.validate(child, K8S_VERSION, strict=False)
