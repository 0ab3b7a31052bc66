"""How the operator keeps up with many Societies: reaction latency, API requests, memory.

The operator runs as it does in a pod -- `society operator`, its own process -- against the API
emulator of the tests (tests/operator/apiserver.py), served from this process. This process also
plays the kubelet and the Job controller: it makes servers ready and finishes Jobs, for every
Society at once, through two iterations (serve, debate, train, serve, debate). Measured:

- reaction latency: from a Job's completion (its status written) to the next phase's children
  being created -- the last training Job after a debate, the next iteration's server after the
  last training Job;
- API requests the operator sends per Society iteration (watch streams counted once each);
- the operator process's peak RSS.

    .venv/bin/python bench/operator_scale.py                 # 100 Societies, the docs' table
    .venv/bin/python bench/operator_scale.py --societies 20
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kmock
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the emulator lives with the tests

from tests.operator.apiserver import ApiServerEmulator  # noqa: E402
from tests.operator.conftest import SOCIETY_CRD, EmulatorThread, KubeClient  # noqa: E402

from society_operator.kube.client import USER_AGENT  # noqa: E402
from society_trainer.results import (  # noqa: E402
    DatasetResult,
    DebateResult,
    EvalResult,
    TrainSplitResult,
)

NS = "bench"
AGENTS = 2


class TimedEmulator(ApiServerEmulator):
    """Notes when each object was created, by the operator's requests."""

    created: dict[tuple[str, str], list[float]]

    async def _handle(self, request: kmock.Request) -> Any:
        response = await super()._handle(request)
        if str(request.method).upper().endswith("POST") and isinstance(request.data, dict):
            name = (request.data.get("metadata") or {}).get("name")
            if name and request.resource is not None:
                key = (request.resource.plural, name)
                self.created.setdefault(key, []).append(time.monotonic())
        return response


def summary(iteration: int) -> str:
    """What a real debate step reports: the evaluation, and (before the last iteration) the
    train split and each agent's datasets, which the operator needs to start training."""
    result = DebateResult(
        iteration=iteration,
        eval=EvalResult(questions=8, correct=4, accuracy=0.5, accuracyStderr=0.18),
    )
    if iteration == 0:
        result = result.model_copy(
            update={
                "train": TrainSplitResult(questions=8),
                "datasets": [
                    DatasetResult(agent=n, role=r, examples=8)
                    for n in range(AGENTS)
                    for r in ("generation", "critic")
                ],
            }
        )
    return result.termination_message()


def wait_all(
    kube: KubeClient, names: list[str], phase: str, iteration: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {s["metadata"]["name"]: s.get("status") or {} for s in kube.list("Society", NS)}
        behind = [
            n
            for n in names
            if statuses.get(n, {}).get("phase") != phase
            or statuses[n].get("iteration") != iteration
        ]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(behind)} Societies not {phase} after {timeout}s: {behind[:3]}")
        time.sleep(0.2)


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--societies", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    n = args.societies

    emulator = TimedEmulator()
    emulator.created = {}
    emulator.request_history = 20
    emulator.add_builtins()
    emulator.add_crd(yaml.safe_load(SOCIETY_CRD.read_text()))
    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    server = EmulatorThread(emulator, workdir / "kubeconfig")
    server.start()
    kube = KubeClient(server.kubeconfig, emulator.resources)
    env = os.environ | {"KUBECONFIG": str(server.kubeconfig)}
    command = [str(Path(sys.executable).with_name("society")), "operator", "--no-leader-elect"]
    command += ["--health-port", "0", "--metrics-port", "0"]
    log = (workdir / "operator.log").open("w")
    operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        names = [f"s{i:03d}" for i in range(n)]
        started = time.monotonic()
        for name in names:
            spec = {
                "model": {"name": "org/model"},
                "task": {"name": "arithmetic", "trainSize": 8, "evalSize": 8},
                "agents": AGENTS,
                "finetune": {"iterations": 1},
            }
            kube.create(
                {
                    "apiVersion": "society.dev/v1alpha1",
                    "kind": "Society",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": spec,
                }
            )
        debate_done: dict[str, float] = {}
        training_done: dict[str, float] = {}
        for iteration in (0, 1):
            wait_all(kube, names, "Serving", iteration, args.timeout)
            for name in names:
                ready = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
                kube.patch_status("Deployment", NS, f"{name}-vllm", ready)
            wait_all(kube, names, "Debating", iteration, args.timeout)
            for name in names:
                kube.finish_job(
                    NS, f"{name}-debate-it{iteration}", termination_message=summary(iteration)
                )
                if iteration == 0:
                    debate_done[name] = time.monotonic()
            if iteration == 1:
                break
            wait_all(kube, names, "Training", 0, args.timeout)
            for name in names:
                jobs = [
                    f"{name}-train-{r}-{a}-it1" for a in range(AGENTS) for r in ("gen", "critic")
                ]
                for job in jobs:
                    kube.finish_job(NS, job)
                training_done[name] = time.monotonic()
        wait_all(kube, names, "Succeeded", 1, args.timeout)
        elapsed = time.monotonic() - started
        peak = rss_peak_mib(operator.pid)
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(30)
        kube.close()
        server.stop()

    created = emulator.created
    roles = [f"{r}-{a}" for a in range(AGENTS) for r in ("gen", "critic")]
    to_training = [
        max(created[("jobs", f"{name}-train-{role}-it1")][0] for role in roles) - debate_done[name]
        for name in names
    ]
    # <name>-vllm is created twice: for iteration 0, then for iteration 1 after training.
    to_serving = [
        created[("deployments", f"{name}-vllm")][1] - training_done[name] for name in names
    ]
    calls = sum(
        count
        for (agent, verb, _, _), count in emulator.calls.items()
        if agent.startswith((USER_AGENT, "kopf/"))
    )
    print(f"{n} Societies x 2 iterations ({AGENTS} agents, LoRA), run in {elapsed:.1f} s")
    print()
    print("| measure | p50 | p95 | max |")
    print("|---|---|---|---|")
    for label, values in (
        ("debate Job complete -> all training Jobs created (s)", to_training),
        ("last training Job complete -> next server created (s)", to_serving),
    ):
        if values:
            print(
                f"| {label} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} "
                f"| {max(values):.2f} |"
            )
    print()
    print(f"operator API requests: {calls} in all, {calls / (2 * n):.1f} per Society iteration:")
    by_call = sorted(
        (
            (count, verb, resource)
            for (agent, verb, _, resource), count in emulator.calls.items()
            if agent.startswith((USER_AGENT, "kopf/"))
        ),
        reverse=True,
    )
    streams = sum(count for count, verb, _ in by_call if verb in ("list", "watch"))
    for count, verb, resource in by_call:
        if verb not in ("list", "watch"):
            print(f"  {verb} {resource}: {count / (2 * n):.1f}")
    print(f"  list and watch (kopf's caches, for all Societies at once): {streams} in all")
    print(f"operator peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
