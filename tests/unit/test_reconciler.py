"""The pure state machine, driven through whole runs by a tiny in-memory world that plays the
apiserver, the job controller and the kubelet (the kopf wiring is tested on a real control
plane, tests/cluster/)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from society_operator.api import Society
from society_operator.core.observed import Observed, ObservedJob, ObservedServer
from society_operator.core.reconciler import reconcile
from society_operator.settings import Settings

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class World:
    def __init__(self, manifest: dict):
        manifest["metadata"].update(namespace="research", uid="u-1", generation=1)
        self.society = Society.model_validate(manifest)
        self.jobs: dict[str, ObservedJob] = {}
        self.servers: dict[str, ObservedServer] = {}
        self.claim = False
        self.claim_pending_since = None
        self.now = T0
        self.created: list[str] = []
        self.events: list[str] = []
        self.messages: list[tuple[str, str]] = []

    def observed(self) -> Observed:
        return Observed(
            jobs=dict(self.jobs),
            servers=dict(self.servers),
            claim=self.claim,
            claim_pending_since=self.claim_pending_since,
        )

    def reconcile(self, minutes: float = 1):
        self.now += timedelta(minutes=minutes)
        plan = reconcile(self.society, self.observed(), Settings(), self.now)
        for child in plan.create:
            name, kind, obj = child.name, child.kind, child.body
            self.created.append(f"{kind}/{name}")
            if kind == "Job":
                phase = "suspended" if obj["spec"]["suspend"] else "pending"
                self.jobs[name] = ObservedJob(name, phase)
            elif kind == "Deployment":
                iteration = int(obj["metadata"]["labels"]["society.dev/iteration"])
                self.servers[name] = ObservedServer(name, iteration, 1, False, self.now)
            elif kind == "PersistentVolumeClaim":
                self.claim = True
        for kind, name in plan.delete:
            if kind == "Deployment":
                self.servers.pop(name, None)
        for name, replicas in plan.scale.items():
            old = self.servers[name]
            self.servers[name] = ObservedServer(name, old.iteration, replicas, False, old.created)
        for name, suspend in plan.suspend_jobs.items():
            self.jobs[name] = ObservedJob(name, "suspended" if suspend else "running")
        self.events += [e.reason for e in plan.events]
        self.messages += [(e.reason, e.message) for e in plan.events]
        self.society = self.society.model_copy(update={"status": plan.status})
        return plan

    @property
    def status(self):
        return self.society.status

    def debating(self):
        """From nothing to the debate of iteration 0: servers created, ready, debate Job made."""
        self.reconcile()
        self.servers_ready()
        self.reconcile()

    def debate_succeeded_without_message(self):
        """The Job's Complete condition, seen before its pod's termination message."""
        name = "minimal-debate-it0"
        self.jobs[name] = ObservedJob(name, "succeeded", None, None, self.now)

    def train_and_serve(self, iteration: int):
        """The training Jobs of `iteration` succeed; its servers start and become ready."""
        for name in [n for n in self.jobs if n.endswith(f"-it{iteration}") and "-train-" in n]:
            self.finish(name)
        self.reconcile()
        self.servers_ready()
        self.reconcile()

    def servers_ready(self):
        for name, s in self.servers.items():
            self.servers[name] = ObservedServer(name, s.iteration, s.replicas, True, s.created)

    def finish(self, name: str, summary: dict | None = None, failed: bool = False):
        self.jobs[name] = ObservedJob(
            name,
            "failed" if failed else "succeeded",
            json.dumps(summary or {}),
            "BackoffLimitExceeded" if failed else None,
        )

    def condition(self, kind: str) -> str:
        return next(c.status for c in self.status.conditions if c.type == kind)


def debate_summary(accuracy: float, agents: int = 3) -> dict:
    return {
        "eval": {
            "questions": 500,
            "accuracy": accuracy,
            "accuracyStderr": 0.02,
            "consensus": 0.8,
            "diversity": 0.3,
            "diversityMethod": "lexical",
        },
        "train": {"questions": 1000},
        "datasets": [
            {"agent": n, "role": r, "examples": 100 + n}
            for n in range(agents)
            for r in ("generation", "critic")
        ],
    }


@pytest.fixture
def world(minimal_society):
    minimal_society["spec"]["finetune"] = {"iterations": 2}
    return World(minimal_society)


def test_a_whole_run_over_two_iterations(world):
    world.reconcile()
    assert world.status.phase == "Serving" and world.condition("Progressing") == "True"
    assert world.created == [
        "PersistentVolumeClaim/minimal-artifacts",
        "Secret/minimal-vllm-api-key",  # the servers' API key, then who may reach them
        "NetworkPolicy/minimal-vllm",
        "NetworkPolicy/minimal-steps",
        "Deployment/minimal-vllm",
        "Service/minimal-vllm",
    ]
    world.reconcile()
    assert not world.jobs  # no debate before the servers are ready
    world.servers_ready()
    world.reconcile()
    assert world.status.phase == "Debating" and "minimal-debate-it0" in world.jobs

    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()
    assert world.status.phase == "Training" and not world.servers  # GPUs freed for training
    assert world.status.iterations[0].accuracy == 0.5 and world.status.accuracy == 0.5
    assert len(world.status.iterations[0].datasets) == 6
    training = sorted(n for n in world.jobs if "-train-" in n)
    assert training == sorted(
        f"minimal-train-{r}-{n}-it1" for n in range(3) for r in ("gen", "critic")
    )
    assert world.status.children.trainingJobs == [
        f"minimal-train-{r}-{n}-it1" for n in range(3) for r in ("gen", "critic")
    ]

    for name in training[:-1]:
        world.finish(name, {"steps": 10})
    world.reconcile()
    assert world.status.phase == "Training" and world.status.iteration == 0
    world.finish(training[-1], {"steps": 10})
    world.reconcile()
    assert world.status.iteration == 1 and world.status.phase == "Serving"
    assert world.servers["minimal-vllm"].iteration == 1  # now serving the adapters

    world.servers_ready()
    world.reconcile()
    world.finish("minimal-debate-it1", debate_summary(0.6))
    world.reconcile()
    world.train_and_serve(2)
    world.finish("minimal-debate-it2", {"eval": {"accuracy": 0.7, "questions": 500}})
    world.reconcile()

    assert world.status.phase == "Succeeded"
    assert world.condition("Ready") == "True" and world.condition("Progressing") == "False"
    assert [it.accuracy for it in world.status.iterations] == [0.5, 0.6, 0.7]
    assert world.status.accuracy == 0.7 and world.status.iteration == 2
    assert not world.servers and world.status.completionTime is not None
    # One Event per step: a phase change that follows an iteration's step is said in its Event.
    assert world.events == [
        "ServersStarting",
        "Debating",
        "IterationEvaluated",  # ... ; Training
        "IterationTrained",  # ... ; ServersStarting
        "Debating",
        "IterationEvaluated",
        "IterationTrained",
        "Debating",
        "IterationEvaluated",
        "Succeeded",
    ]
    evaluated = next(m for r, m in world.messages if r == "IterationEvaluated")
    assert evaluated.startswith("iteration 0: accuracy 0.500; ") and "train" in evaluated
    trained = next(m for r, m in world.messages if r == "IterationTrained")
    assert trained.startswith("trained the ") and "iteration 1; " in trained
    created = len(world.created)
    world.reconcile()  # nothing more happens once done
    assert len(world.created) == created


def test_reconciling_the_same_world_twice_creates_nothing_twice(world):
    """What makes a restart at any instant safe: the plan depends only on what exists."""

    def same_twice():
        before = world.society
        first = reconcile(world.society, world.observed(), Settings(), world.now)
        second = reconcile(world.society, world.observed(), Settings(), world.now)
        assert [o.name for o in first.create] == [o.name for o in second.create]
        existing = set(world.jobs) | set(world.servers)
        assert not {o.name for o in first.create if o.kind in ("Job", "Deployment")} & existing
        world.society = before

    for _ in range(8):
        same_twice()
        world.reconcile()
        world.servers_ready()
        for name, job in list(world.jobs.items()):
            if job.phase != "succeeded":
                world.finish(name, debate_summary(0.5))


def test_a_failed_debate_fails_the_society_quoting_the_error(world):
    world.debating()
    world.jobs["minimal-debate-it0"] = ObservedJob(
        "minimal-debate-it0",
        "failed",
        json.dumps(
            {
                "error": "GenerationError: model 'base' at http://minimal-vllm:8000/v1: "
                "HTTP 404: not found"
            }
        ),
        "BackoffLimitExceeded",
    )
    plan = world.reconcile()
    assert world.status.phase == "Failed" and world.condition("Failed") == "True"
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert failed.reason == "JobFailed"
    assert failed.message.startswith(
        "Job minimal-debate-it0 failed (BackoffLimitExceeded): GenerationError: model 'base'"
    )
    assert ("Deployment", "minimal-vllm") in plan.delete
    assert plan.events[-1].type == "Warning"


def test_a_failed_step_without_a_json_message_quotes_its_log_tail(world):
    world.debating()
    world.jobs["minimal-debate-it0"] = ObservedJob(
        "minimal-debate-it0",
        "failed",
        "Traceback ...\nOSError: disk full\n",
        "BackoffLimitExceeded",
    )
    world.reconcile()
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert failed.message.endswith(": OSError: disk full")


def test_a_server_that_never_gets_ready_fails_loudly(world):
    world.reconcile()
    name = "minimal-vllm"
    s = world.servers[name]
    world.servers[name] = ObservedServer(name, s.iteration, 1, False, s.created, "ImagePullBackOff")
    world.reconcile(minutes=10)
    assert world.status.phase == "Serving"
    world.reconcile(minutes=25)  # past the default startupDeadlineSeconds of 1800
    assert world.status.phase == "Failed"
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert failed.reason == "ServerNotReady" and "(ImagePullBackOff)" in failed.message


def test_suspend_and_resume_where_it_stopped(world):
    world.debating()
    world.jobs["minimal-debate-it0"] = ObservedJob("minimal-debate-it0", "running")
    world.society.spec.suspend = True
    world.society.metadata.generation = 2
    plan = world.reconcile()
    assert world.status.phase == "Suspended" and world.condition("Suspended") == "True"
    assert world.status.observedGeneration == 2
    assert plan.scale == {"minimal-vllm": 0}
    assert plan.suspend_jobs == {"minimal-debate-it0": True}
    assert world.condition("Progressing") == "False"
    jobs_before = set(world.jobs)
    world.reconcile()
    assert set(world.jobs) == jobs_before  # no new Job while suspended

    world.society.spec.suspend = False
    plan = world.reconcile()
    assert plan.suspend_jobs == {"minimal-debate-it0": False}
    assert plan.scale == {"minimal-vllm": 1} and not plan.create and not plan.delete
    assert world.status.phase == "Debating" and world.condition("Suspended") == "False"
    assert world.condition("Progressing") == "True"


def test_with_a_queue_suspend_deactivates_the_workloads_and_never_touches_spec_suspend(world):
    """Kueue owns a queued Job's spec.suspend (it unsuspends what it admitted): the Workloads of
    the unfinished Jobs are deactivated instead, and reactivated on resume."""
    world.society.spec.queueName = "a100-queue"
    world.debating()
    world.jobs["minimal-debate-it0"] = ObservedJob("minimal-debate-it0", "running")
    world.jobs["minimal-old"] = ObservedJob("minimal-old", "succeeded", message="{}")
    plan = world.reconcile()
    assert not plan.queue_active  # nothing to do while it runs
    world.society.spec.suspend = True
    plan = world.reconcile()
    assert world.status.phase == "Suspended"
    assert plan.queue_active == {"minimal-debate-it0": False} and not plan.suspend_jobs
    world.jobs["minimal-debate-it0"] = ObservedJob("minimal-debate-it0", "suspended")  # Kueue
    plan = world.reconcile()
    assert plan.queue_active == {"minimal-debate-it0": False} and not plan.suspend_jobs

    world.society.spec.suspend = False
    plan = world.reconcile()
    # Every Workload, the finished Job's too: it may have finished as it was being deactivated.
    assert plan.queue_active == {"minimal-debate-it0": True, "minimal-old": True}
    assert not plan.suspend_jobs
    assert world.status.phase == "Debating"
    plan = world.reconcile()  # resumed: Kueue admits it again, nothing more to say
    assert not plan.queue_active and not plan.suspend_jobs


def test_the_active_deadline_fails_the_run(minimal_society):
    minimal_society["spec"]["activeDeadlineSeconds"] = 3600
    world = World(minimal_society)
    world.reconcile()
    world.servers_ready()
    world.reconcile(minutes=59)
    assert world.status.phase == "Debating"
    world.reconcile(minutes=2)
    assert world.status.phase == "Failed"
    assert next(c for c in world.status.conditions if c.type == "Failed").reason == (
        "DeadlineExceeded"
    )


def test_condition_transition_times_move_only_on_change(world):
    world.reconcile()
    first = {c.type: c.lastTransitionTime for c in world.status.conditions}
    world.reconcile()
    assert {c.type: c.lastTransitionTime for c in world.status.conditions} == first
    assert all(c.observedGeneration == 1 for c in world.status.conditions)


def test_an_existing_claim_is_used_not_created(minimal_society):
    minimal_society["spec"]["storage"] = {"claimName": "shared"}
    world = World(minimal_society)
    world.reconcile()
    assert not any(c.startswith("PersistentVolumeClaim/") for c in world.created)
    assert world.status.children.claim == "shared"


def test_gpu_seconds_book_servers_before_they_go_and_never_decrease(world):
    world.reconcile()
    world.servers_ready()
    name, server = next(iter(world.servers.items()))
    world.servers[name] = ObservedServer(
        name, server.iteration, 1, True, server.created, gpu_seconds=300.0
    )
    world.reconcile()  # debating: the server's pods are counted while they run
    assert world.status.gpuSeconds == 300.0
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()  # training: the server is deleted, its time booked on iteration 0
    assert world.status.iterations[0].servingGpuSeconds == 300.0
    assert world.status.gpuSeconds == 300.0
    # The deleted Deployment may still be seen before the deletion lands: no double count.
    world.servers[name] = ObservedServer(
        name, server.iteration, 1, True, server.created, gpu_seconds=310.0
    )
    plan = world.reconcile()
    assert ("Deployment", name) in plan.delete
    assert world.status.gpuSeconds == 300.0


def test_results_that_arrive_after_the_jobs_verdict_are_waited_for(world):
    world.debating()
    world.debate_succeeded_without_message()
    world.reconcile(minutes=0.5)
    assert world.status.phase == "Debating" and world.status.iterations[0].accuracy is None
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile(minutes=0.1)
    assert world.status.phase == "Training" and world.status.iterations[0].accuracy == 0.5


def test_results_that_never_arrive_are_reported_missing(world):
    world.debating()
    world.debate_succeeded_without_message()
    world.reconcile(minutes=0.5)
    assert world.status.phase == "Debating"
    world.reconcile(minutes=1)
    assert world.status.phase == "Training" and world.status.iterations[0].accuracy is None
    assert "ResultsMissing" in world.events


def test_a_training_pod_stuck_pulling_its_image_fails_the_run_after_the_deadline(world):
    world.debating()
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()
    name = "minimal-train-gen-0-it1"
    stuck = ObservedJob(name, "pending", waiting_reason="ImagePullBackOff", created=world.now)
    world.jobs[name] = stuck
    world.reconcile(minutes=29)
    assert world.status.phase == "Training"
    world.reconcile(minutes=2)
    assert world.status.phase == "Failed"
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert failed.reason == "JobNotStarted" and "ImagePullBackOff" in failed.message


def test_raising_iterations_after_success_debates_the_train_split_and_goes_on(world):
    world.society.spec.finetune.iterations = 1
    world.debating()
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()
    world.train_and_serve(1)
    world.finish("minimal-debate-it1", {"eval": {"accuracy": 0.6, "questions": 500}})
    world.reconcile()
    assert world.status.phase == "Succeeded" and world.status.iterations[1].trainQuestions is None
    world.society.spec.finetune.laterIterationsLearningRate = 1e-6
    world.society.metadata.generation = 2
    world.reconcile()
    assert world.status.phase == "Succeeded"  # final, while iterations is not raised
    assert world.status.observedGeneration == 2  # seen, though nothing was left to do

    world.society.spec.finetune.iterations = 2
    world.society.metadata.generation = 3
    world.reconcile()
    assert world.status.phase == "Serving" and world.status.completionTime is None
    assert world.condition("Ready") == "False" and world.condition("Progressing") == "True"
    assert world.servers["minimal-vllm"].iteration == 1
    world.servers_ready()
    world.reconcile()
    assert world.status.phase == "Debating" and "minimal-debate-it1-train" in world.jobs
    assert world.status.children.debateJob == "minimal-debate-it1-train"
    trained = {"train": {"questions": 1000}, "datasets": debate_summary(0.5)["datasets"]}
    world.finish("minimal-debate-it1-train", trained)
    world.reconcile()
    assert world.status.phase == "Training" and not world.servers
    entry = world.status.iterations[1]
    assert entry.accuracy == 0.6 and entry.trainQuestions == 1000 and len(entry.datasets) == 6
    world.train_and_serve(2)
    world.finish("minimal-debate-it2", {"eval": {"accuracy": 0.7, "questions": 500}})
    world.reconcile()
    assert world.status.phase == "Succeeded" and world.status.iteration == 2
    assert [it.accuracy for it in world.status.iterations] == [0.5, 0.6, 0.7]
    assert world.events.count("Succeeded") == 2
    debates = sorted(n for n in world.jobs if "-debate-" in n)
    assert debates == [
        "minimal-debate-it0",
        "minimal-debate-it1",
        "minimal-debate-it1-train",
        "minimal-debate-it2",
    ]


def test_a_finished_debate_job_deleted_later_does_not_restart_the_iteration(world):
    """A user or a TTL policy deletes the debate Job while training holds the GPUs: its result is
    recorded in the status, so no server comes back and no debate runs again."""
    world.debating()
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()
    assert world.status.phase == "Training"
    del world.jobs["minimal-debate-it0"]
    created = len(world.created)
    plan = world.reconcile()
    assert world.status.phase == "Training"
    assert world.created[created:] == [] and not world.servers
    assert not [c for c in plan.create if c.kind in ("Deployment", "Job")]
    assert world.status.iterations[0].accuracy == 0.5


def test_a_succeeded_debate_whose_result_cannot_be_read_fails_naming_the_job(world):
    world.debating()
    world.jobs["minimal-debate-it0"] = ObservedJob(
        "minimal-debate-it0", "succeeded", '{"eval": {"accuracy": "most"}}', None, world.now
    )
    world.reconcile()  # never an exception, in this reconcile or the next
    world.reconcile()
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert world.status.phase == "Failed" and failed.reason == "ResultInvalid"
    assert failed.message.startswith("Job minimal-debate-it0 succeeded but its result cannot be")
    assert "eval" in failed.message


def test_missing_results_are_said_in_a_condition_that_stays_to_the_end(world):
    world.debating()
    world.debate_succeeded_without_message()
    world.reconcile(minutes=2)
    assert world.status.phase == "Training"
    world.train_and_serve(1)
    world.finish("minimal-debate-it1", debate_summary(0.6))
    world.reconcile()
    world.train_and_serve(2)
    world.finish("minimal-debate-it2", debate_summary(0.7))
    world.reconcile()
    assert world.status.phase == "Succeeded"
    degraded = next(c for c in world.status.conditions if c.type == "Degraded")
    assert degraded.status == "True" and degraded.reason == "ResultsMissing"
    assert "minimal-debate-it0" in degraded.message and "iteration 0" in degraded.message


def test_a_deleted_service_is_created_again(world):
    """The debate reaches a server through its Service: one deleted by someone comes back."""
    world.debating()
    server = world.servers["minimal-vllm"]
    world.servers["minimal-vllm"] = ObservedServer(
        server.name, server.iteration, server.replicas, server.ready, server.created, service=False
    )
    plan = world.reconcile()
    assert [(c.kind, c.name) for c in plan.create] == [("Service", "minimal-vllm")]
    assert not plan.delete and world.status.phase == "Debating"


def test_an_artifact_claim_deleted_mid_run_fails_the_run_and_is_not_made_anew(world):
    world.debating()
    world.finish("minimal-debate-it0", debate_summary(0.5))
    world.reconcile()
    world.claim = False  # someone deleted it while training ran
    plan = world.reconcile()
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert world.status.phase == "Failed" and failed.reason == "ClaimLost"
    assert "minimal-artifacts" in failed.message
    assert not [c for c in plan.create if c.kind == "PersistentVolumeClaim"]


def test_a_claim_that_never_binds_fails_the_run_saying_why(world):
    world.reconcile()
    world.claim_pending_since = world.now
    world.reconcile(minutes=5)
    progressing = next(c for c in world.status.conditions if c.type == "Progressing")
    assert world.status.phase == "Serving"
    assert "artifact claim minimal-artifacts to bind" in progressing.message
    world.reconcile(minutes=30)  # past startupDeadlineSeconds (1800 s)
    failed = next(c for c in world.status.conditions if c.type == "Failed")
    assert world.status.phase == "Failed" and failed.reason == "ClaimNotBound"
    assert "ReadWriteMany" in failed.message and "storageClassName" in failed.message
