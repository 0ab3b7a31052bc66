"""The operator's handlers against the API emulator: the whole lifecycle, as a cluster would run it.

The test plays the user (kubectl), the kubelet (server readiness) and the Job controller (pods that
terminate with the trainer's summary as their termination message); the operator is the real one,
registered into a fresh kopf registry and started as its pod would be.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import kubernetes_validate
import pytest

from society_trainer.config import STEP_CONFIG_ENV

from .conftest import KubeClient

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
    train = {"questions": 8}
    return json.dumps(
        {"eval": evaluation | {"diversity": 0.2}, "train": train, "datasets": datasets}
    )


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

    def train_and_serve(self, iteration: int) -> None:
        """The training Jobs of `iteration` succeed; its servers start and get ready; it debates."""
        for job in self.training_jobs(iteration):
            self.kube.finish_job(NS, job)
        self.wait_phase("Serving", iteration=iteration)
        self.servers_ready()
        self.wait_phase("Debating", iteration=iteration)

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

    def wait_events(self, expected: list[str], last: bool = False) -> None:
        """Wait until the Events (the `last` ones, or all) are `expected`: kopf posts them in
        the background, shortly after the status they describe."""

        def posted() -> bool:
            events = self.events()
            return (events[-len(expected) :] if last else events) == expected

        self.kube.wait_for(posted, f"the Events {expected}")

    def condition(self, kind: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)


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

    society.wait_events(2 * ITERATION_EVENTS + LAST_EVALUATION_EVENTS)
    children = [obj for kind in ("Job", "PersistentVolumeClaim") for obj in society.children(kind)]
    for child in children:
        kubernetes_validate.validate(child, K8S_VERSION, strict=False)


def test_a_job_failed_past_its_backoff_limit_fails_the_society_quoting_its_error(
    kube, start_operator
):
    start_operator()
    society = Society(kube, "phi3").create(backoffLimit=3)
    society.wait_phase("Serving")
    society.servers_ready()
    society.wait_phase("Debating")
    job = kube.get("Job", NS, "phi3-debate-it0")
    assert job["spec"]["backoffLimit"] == 3  # the Job controller retries its pods
    # A pod failed and the Job controller retries it: the Society keeps debating.
    kube.patch_status("Job", NS, "phi3-debate-it0", {"failed": 1, "active": 1})
    society.wait_events(["Debating"], last=True)
    assert society.status()["phase"] == "Debating"

    error = json.dumps({"error": "CUDA out of memory on the vLLM server"})
    kube.finish_job(NS, "phi3-debate-it0", succeeded=False, termination_message=error)
    status = society.wait_phase("Failed")
    failed = society.condition("Failed")
    assert failed["status"] == "True" and failed["reason"] == "JobFailed"
    assert failed["message"] == (
        "Job phi3-debate-it0 failed (BackoffLimitExceeded): CUDA out of memory on the vLLM server"
    )
    assert society.condition("Ready")["status"] == "False"
    assert society.condition("Progressing")["status"] == "False"
    assert status["completionTime"]
    society.wait_names("Deployment", [])  # a failed Society holds no GPUs
    society.wait_events(["JobFailed"], last=True)
    warning = [e for e in kube.list("Event", NS) if e["reason"] == "JobFailed"]
    assert warning[0]["type"] == "Warning" and "CUDA out of memory" in warning[0]["message"]


def test_the_active_deadline_fails_a_run_without_any_event_to_wake_it(kube, start_operator):
    start_operator()
    society = Society(kube, "phi3").create(activeDeadlineSeconds=2)
    society.wait_phase("Serving")
    society.wait_phase("Failed", timeout=10)  # only the resync can notice: nothing else changes
    assert society.condition("Failed")["reason"] == "DeadlineExceeded"
    society.wait_names("Deployment", [])


def test_suspend_stops_the_gpus_and_resume_continues_where_it_stopped(kube, start_operator):
    start_operator()
    society = Society(kube, "phi3").create()
    society.wait_phase("Serving")
    society.servers_ready()
    society.wait_phase("Debating")
    kube.patch("Society", NS, "phi3", {"spec": {"suspend": True}})
    society.wait_phase("Suspended")
    assert society.condition("Suspended")["status"] == "True"
    assert society.condition("Suspended")["observedGeneration"] == 2
    assert kube.get("Deployment", NS, "phi3-vllm")["spec"]["replicas"] == 0
    assert kube.get("Job", NS, "phi3-debate-it0")["spec"]["suspend"] is True

    kube.patch("Society", NS, "phi3", {"spec": {"suspend": False}})
    society.wait_phase("Debating")
    assert kube.get("Deployment", NS, "phi3-vllm")["spec"]["replicas"] == 1
    assert kube.get("Job", NS, "phi3-debate-it0")["spec"]["suspend"] is False
    assert society.condition("Suspended")["status"] == "False"
    kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.5))
    society.wait_phase("Training")
    assert society.names("Job")[0] == "phi3-debate-it0"  # the same Job, resumed: not a new one
    society.wait_events(["Suspended", "Debating", "IterationEvaluated", "Training"], last=True)


def creations(kube: KubeClient, kind: str) -> dict[str, int]:
    """How many times each object of `kind` was created, from the apiserver's whole history."""
    counts: dict[str, int] = {}
    for event in kube.watch(kind, NS, resource_version="1", seconds=1):
        if event["type"] == "ADDED":
            name = event["object"]["metadata"]["name"]
            counts[name] = counts.get(name, 0) + 1
    return counts


ITERATION_EVENTS = [
    "ServersStarting",
    "Debating",
    "IterationEvaluated",
    "Training",
    "IterationTrained",
]
LAST_EVALUATION_EVENTS = ["ServersStarting", "Debating", "IterationEvaluated", "Succeeded"]


def test_raising_iterations_extends_a_succeeded_society(kube, start_operator):
    start_operator()
    society = Society(kube, "phi3").create(finetune={"iterations": 1})
    society.wait_phase("Serving")
    society.servers_ready()
    society.wait_phase("Debating")
    kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.5))
    society.wait_phase("Training")
    society.train_and_serve(1)
    evaluation = {"eval": {"questions": 8, "accuracy": 0.625}}  # the last debate evaluates only
    kube.finish_job(NS, "phi3-debate-it1", termination_message=json.dumps(evaluation))
    society.wait_phase("Succeeded")
    society.wait_names("Deployment", [])

    kube.patch("Society", NS, "phi3", {"spec": {"finetune": {"iterations": 2}}})
    society.wait_phase("Serving", iteration=1)  # iteration 1's adapters, served again
    assert "completionTime" not in society.status()
    society.servers_ready()
    status = society.wait_phase("Debating", iteration=1)
    assert status["children"]["debateJob"] == "phi3-debate-it1-train"
    job = kube.get("Job", NS, "phi3-debate-it1-train")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env[STEP_CONFIG_ENV])["splits"] == ["train"]
    kube.finish_job(NS, "phi3-debate-it1-train", termination_message=summary(0.625))
    society.wait_phase("Training")
    assert society.status()["iterations"][1]["trainQuestions"] == 8
    society.train_and_serve(2)
    kube.finish_job(NS, "phi3-debate-it2", termination_message=json.dumps(evaluation))
    status = society.wait_phase("Succeeded", iteration=2)
    assert [it["accuracy"] for it in status["iterations"]] == [0.5, 0.625, 0.625]
    extension = ["Succeeded", "ServersStarting", "Debating", "Training", "IterationTrained"]
    society.wait_events(
        [*extension, "ServersStarting", "Debating", "IterationEvaluated", "Succeeded"], last=True
    )


@pytest.mark.parametrize(
    "stop_at", [0, 1, 2, 5], ids=["Serving", "Debating", "Training", "Succeeded"]
)
def test_an_operator_restarted_in_any_phase_creates_nothing_twice(kube, start_operator, stop_at):
    """The operator stops in a phase; the world moves on while it is down (a server gets
    ready, a Job finishes); a new operator, with nothing in memory, picks up from there."""
    society = Society(kube, "phi3")

    def finish_training() -> None:
        for job in society.training_jobs(1):
            kube.finish_job(NS, job, seconds=10)

    steps = [
        (lambda: society.create(finetune={"iterations": 1}), "Serving", 0),
        (society.servers_ready, "Debating", 0),
        (
            lambda: kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.5)),
            "Training",
            0,
        ),
        (finish_training, "Serving", 1),
        (society.servers_ready, "Debating", 1),
        (
            lambda: kube.finish_job(NS, "phi3-debate-it1", termination_message=summary(0.6)),
            "Succeeded",
            1,
        ),
    ]
    operator = start_operator()
    for step, (action, phase, iteration) in enumerate(steps):
        action()
        if not operator.running:
            operator = start_operator()
        society.wait_phase(phase, iteration=iteration)
        if step == stop_at:
            operator.stop()
    if stop_at == len(steps) - 1:  # restarted after the end: it must change nothing
        before = society.status()
        operator = start_operator()
        society.kube.wait_for(lambda: society.status() == before, "an unchanged status")
        time.sleep(1.5)  # a resync
        assert society.status() == before

    status = society.status()
    assert [entry["accuracy"] for entry in status["iterations"]] == [0.5, 0.6]
    assert status["gpuSeconds"] == 60  # 6 training Jobs of 10 s
    assert set(creations(kube, "Job").values()) == {1} and len(creations(kube, "Job")) == 2 + 6
    assert creations(kube, "Deployment") == {"phi3-vllm": 2}  # once per iteration
    assert creations(kube, "Service") == {"phi3-vllm": 2}
    assert creations(kube, "PersistentVolumeClaim") == {"phi3-artifacts": 1}
    posted = Counter(society.events())
    assert posted <= Counter(ITERATION_EVENTS + LAST_EVALUATION_EVENTS), (
        posted
    )  # none twice (one may be lost in a stop)


@pytest.mark.parametrize("when_deleted", ["Retain", "Delete"])
def test_deleting_a_society_collects_its_children_and_keeps_artifacts_unless_told(
    kube, start_operator, when_deleted
):
    start_operator()
    society = Society(kube, "phi3").create(storage={"whenDeleted": when_deleted})
    society.wait_phase("Serving")
    society.servers_ready()
    society.wait_phase("Debating")
    kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.5))
    society.wait_phase("Training")
    assert len(society.names("Job")) == 1 + 6 and society.names("Pod")
    kube.delete("Society", NS, "phi3")
    kube.wait_for(lambda: kube.find("Society", NS, "phi3") is None, "the Society to go")
    for kind in ("Job", "Pod", "Deployment", "Service"):
        society.wait_names(kind, [])
    claims = ["phi3-artifacts"] if when_deleted == "Retain" else []
    society.wait_names("PersistentVolumeClaim", claims)
    time.sleep(1.5)  # a resync: the operator recreates nothing for a Society that is gone
    assert society.names("Job") == [] and society.names("Deployment") == []


def test_twenty_societies_at_once(kube, start_operator):
    start_operator()
    societies = [
        Society(kube, f"s{n:02d}").create(agents=2, finetune={"iterations": 1}) for n in range(20)
    ]
    for iteration in (0, 1):
        for society in societies:
            society.wait_phase("Serving", iteration=iteration)
            society.servers_ready()
        for society in societies:
            society.wait_phase("Debating", iteration=iteration)
            debate = f"{society.name}-debate-it{iteration}"
            kube.finish_job(NS, debate, termination_message=summary(0.5, agents=2))
        if iteration == 1:
            break
        for society in societies:
            society.wait_phase("Training")
            for job in society.training_jobs(1):
                kube.finish_job(NS, job)
    for society in societies:
        status = society.wait_phase("Succeeded", timeout=20)
        assert [entry["accuracy"] for entry in status["iterations"]] == [0.5, 0.5]
    assert len(kube.list("Job", NS)) == 20 * (2 + 4)
    assert kube.list("Deployment", NS) == []


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
