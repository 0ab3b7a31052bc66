"""A scripted kubelet for the Job pods of one namespace: it finishes each step as a trainer would.

kwok plays the kubelet (tests/cluster/stages.yaml): a Job's pod runs until it is annotated with
`society.test/exit-code` and `society.test/message`, then ends with that exit code and that
termination message. This thread annotates every running Job pod of its namespace with what the
real step would report, built with the trainer's own result models from the step config the
operator gave the pod ($SOCIETY_STEP_CONFIG) and its labels; a test overrides the outcome for
chosen Jobs (`fail`), or keeps their pods running until it says so (`hold`, `release`).

    with ScriptedKubelet(api, namespace) as kubelet:
        kubelet.fail("tiny-train-gen-0-it1", "CUDA out of memory")
        ...
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

from society_trainer.config import STEP_CONFIG_ENV, DebateConfig, FinetuneConfig
from society_trainer.results import (
    DatasetResult,
    DebateResult,
    EvalResult,
    FinetuneResult,
    StepError,
    TrainSplitResult,
)

EXIT_CODE = "society.test/exit-code"
MESSAGE = "society.test/message"
JOB_NAME = "batch.kubernetes.io/job-name"


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    message: str


def accuracy(iteration: int) -> float:
    """The stand-in accuracy of an iteration: rises with finetuning, as in the paper."""
    return round(min(0.95, 0.5 + 0.05 * iteration), 6)


def debate_result(config: DebateConfig) -> DebateResult:
    """What `society-trainer debate` reports for `config` (see debate_step.run_debate_step)."""
    evaluation = train = datasets = None
    if "eval" in config.splits:
        n, p = config.task.eval_size, accuracy(config.iteration)
        evaluation = EvalResult(
            questions=n,
            correct=round(n * p),
            accuracy=p,
            accuracyStderr=round(math.sqrt(p * (1 - p) / n), 6),
            consensus=0.8,
            diversity=0.3,
            diversityMethod="lexical",
        )
    if "train" in config.splits:
        multiagent = config.mode == "multiagent"
        agents = len(config.agents) if multiagent else 1
        roles = ["generation", "critic"] if multiagent and config.rounds > 1 else ["generation"]
        size = config.task.train_size
        train = TrainSplitResult(
            questions=size,
            withMajority=size,
            consensus=0.8,
            corrected=[size // 10] * len(config.agents),
            keptCorrect=[size // 2] * len(config.agents),
        )
        datasets = [
            DatasetResult(agent=agent, role=role, examples=size // 2 + agent)
            for agent in range(agents)
            for role in roles
        ]
    return DebateResult(
        iteration=config.iteration,
        mode=config.mode,
        eval=evaluation,
        train=train,
        datasets=datasets,
        seconds=1.0,
    )


def finetune_result(config: FinetuneConfig) -> FinetuneResult:
    """What `society-trainer finetune` reports for `config`."""
    return FinetuneResult(
        iteration=config.iteration,
        agent=config.agent,
        role=config.role,
        method=config.method,
        examples=64,
        steps=16,
        trainLoss=0.5,
        firstLoss=0.9,
        finalLoss=0.4,
        seconds=1.0,
    )


def step_config(pod: dict[str, Any]) -> DebateConfig | FinetuneConfig:
    """The step config the operator gave the pod's container."""
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    data = json.loads(env[STEP_CONFIG_ENV])
    model = DebateConfig if container["command"][-1] == "debate" else FinetuneConfig
    return model.model_validate(data)


def expected_outcome(pod: dict[str, Any]) -> Outcome:
    config = step_config(pod)
    if isinstance(config, DebateConfig):
        return Outcome(0, debate_result(config).termination_message())
    return Outcome(0, finetune_result(config).termination_message())


class ScriptedKubelet:
    """Finishes the Job pods of `namespace` as they start running, until stopped."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, every: float = 0.2):
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.every = every
        self.finished: list[tuple[str, str, Outcome]] = []  # (job, pod, outcome), in order
        self.errors: list[BaseException] = []
        self._overrides: dict[str, Callable[[dict[str, Any]], Outcome]] = {}
        self._held: set[str] = set()
        self._done: set[str] = set()  # pod uids already annotated
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{namespace}", daemon=True)

    # --- what a test scripts ---

    def fail(self, job: str, error: str, exit_code: int = 1) -> None:
        """Every pod of `job` fails with `error` in its termination message, as a step does."""
        outcome = Outcome(exit_code, StepError(error=error).termination_message())
        with self._lock:
            self._overrides[job] = lambda pod: outcome

    def override(self, job: str, outcome: Callable[[dict[str, Any]], Outcome]) -> None:
        with self._lock:
            self._overrides[job] = outcome

    def hold(self, job: str) -> None:
        """Keep the pods of `job` running until `release(job)`."""
        with self._lock:
            self._held.add(job)

    def release(self, job: str) -> None:
        with self._lock:
            self._held.discard(job)

    def jobs_finished(self) -> list[str]:
        with self._lock:
            return [job for job, _, _ in self.finished]

    # --- the loop ---

    def start(self) -> ScriptedKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.errors:
            raise AssertionError(f"the scripted kubelet failed: {self.errors!r}")

    def __enter__(self) -> ScriptedKubelet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._tick()
            except kubernetes.client.ApiException as error:
                if error.status not in (404, 409):  # a pod gone or changed under us: next tick
                    self.errors.append(error)
            except Exception as error:  # report it from stop(), in the test's thread
                self.errors.append(error)
                return

    def _tick(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=JOB_NAME)
        for pod in self.core.api_client.sanitize_for_serialization(pods)["items"]:
            meta = pod["metadata"]
            job = meta["labels"][JOB_NAME]
            running = (pod.get("status") or {}).get("phase") == "Running"
            with self._lock:
                if not running or meta["uid"] in self._done or job in self._held:
                    continue
                if EXIT_CODE in (meta.get("annotations") or {}) or meta.get("deletionTimestamp"):
                    continue
                script = self._overrides.get(job, expected_outcome)
            outcome = script(pod)
            self.core.patch_namespaced_pod(
                meta["name"],
                self.namespace,
                {
                    "metadata": {
                        "annotations": {
                            EXIT_CODE: str(outcome.exit_code),
                            MESSAGE: outcome.message,
                        },
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            with self._lock:
                self._done.add(meta["uid"])
                self.finished.append((job, meta["name"], outcome))
