"""How much memory the operator needs in a cluster full of pods that are not its own, with the
server-side label selectors on its watches (issue 16 item 7) and without them.

The control plane is the tests' (tests/cluster/controlplane.py). N unrelated pods -- no
`society.dev/society` label, each asking for a scheduler that does not exist, so they stay Pending
and cost the scheduler and kwok nothing -- are created in parallel batches. Then the operator is
started as a pod runs it (`society operator`, its own process, a ServiceAccount token), once per
mode, after the pods exist: kopf's first list of pods is what it holds. Measured, per mode, once
the operator's watch of pods is open (from the apiserver's audit log) and a settle time has
passed: the process's resident memory (VmRSS) and its peak (VmHWM). A first run with no unrelated
pods is the baseline. "without" sets SOCIETY_WATCH_SELECTORS=false, which exists for this.

    .venv/bin/python bench/operator_memory.py --pods 10000   # docs/benchmarks.md
    .venv/bin/python bench/operator_memory.py --pods 20 --settle 1   # the CI smoke run

Needs the control-plane binaries (../shared/k8s or $SOCIETY_K8S_ASSETS), as tests/cluster does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the control plane lives with the tests

from bench.operator_scale import OPERATOR_NS, OPERATOR_USER, operator_account  # noqa: E402
from tests.cluster.assets import DEFAULT, SETTING, find_assets, unpack  # noqa: E402
from tests.cluster.controlplane import (  # noqa: E402
    ControlPlane,
    Pool,
    Process,
    stop_processes,
    wait_for,
)

NS = "unrelated"
POOLS = (Pool("cpu", 1, {"cpu": "16", "memory": "64Gi", "pods": "110"}),)


def unrelated_pod(i: int) -> dict:
    """A small but ordinary pod: a Deployment's labels, one container, requests."""
    return {
        "metadata": {"name": f"web-{i:05d}", "labels": {"app": "web", "tier": "frontend"}},
        "spec": {
            "schedulerName": "not-scheduled",  # stays Pending: no scheduler or kubelet works
            "containers": [
                {
                    "name": "web",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def create_pods(api: kubernetes.client.ApiClient, first: int, count: int, workers: int) -> float:
    core = kubernetes.client.CoreV1Api(api)
    started = time.monotonic()

    def create(i: int) -> None:
        core.create_namespaced_pod(NS, unrelated_pod(i))

    with ThreadPoolExecutor(workers) as executor:
        for _ in executor.map(create, range(first, first + count)):
            pass
    return time.monotonic() - started


def install_crd(plane: ControlPlane) -> None:
    crd = yaml.safe_load((ROOT / "crds" / "society.yaml").read_text())
    extensions = kubernetes.client.ApiextensionsV1Api(plane.api)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        got = extensions.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = got.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, "the Society CRD Established")


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def pods_watch_open(plane: ControlPlane, since: int) -> bool:
    """Whether the operator has opened its watch of pods (kopf lists first, then watches)."""
    for event in plane.audit_events()[since:]:
        ref = event.get("objectRef") or {}
        if event.get("verb") == "watch" and ref.get("resource") == "pods":
            return True
    return False


def measure(
    plane: ControlPlane, kubeconfig: str, selectors: bool, settle: float, log: Path
) -> tuple[float, float, float]:
    """Start the operator, wait for its pods watch and `settle` seconds; (seconds to the watch,
    RSS, peak RSS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIETY_")}
    env |= {"KUBECONFIG": kubeconfig, "POD_NAMESPACE": OPERATOR_NS}
    if not selectors:
        env["SOCIETY_WATCH_SELECTORS"] = "false"
    command = [str(Path(sys.executable).with_name("society")), "operator"]
    command += ["--no-leader-elect", "--health-port", "0", "--metrics-port", "0"]
    since = len(plane.audit_events())
    started = time.monotonic()
    operator = Process("society-operator", command, log, env=env)
    try:

        def watching() -> bool:
            operator.check()
            return pods_watch_open(plane, since)

        wait_for(watching, "the operator's watch of pods", timeout=300, every=0.5)
        ready = time.monotonic() - started
        time.sleep(settle)
        operator.check()
        rss, peak = memory_mib(operator.popen.pid)
    finally:
        stop_processes([operator])
    return ready, rss, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10000, help="unrelated pods in the cluster")
    parser.add_argument("--workers", type=int, default=8, help="parallel pod creations")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the watch opens")
    args = parser.parse_args()

    assets = find_assets()
    if assets is None:
        raise SystemExit(f"no Kubernetes control-plane binaries: set {SETTING} or {DEFAULT}")
    plane = ControlPlane(unpack(assets), audit_users=(OPERATOR_USER,), pools=POOLS, volumes={})
    plane.start()
    workdir = plane.workdir
    print(f"control plane up in {plane.started_in:.1f}s ({workdir})", file=sys.stderr)
    rows = []
    try:
        install_crd(plane)
        kubernetes.client.CoreV1Api(plane.api).create_namespace({"metadata": {"name": NS}})
        kubeconfig = operator_account(plane)
        ready, rss, peak = measure(plane, kubeconfig, True, args.settle, workdir / "op-0.log")
        rows.append((0, "with", ready, rss, peak))
        took = create_pods(plane.api, 0, args.pods, args.workers)
        print(f"created {args.pods} pods in {took:.1f}s", file=sys.stderr)
        for selectors in (True, False):
            log = workdir / f"op-{selectors}.log"
            ready, rss, peak = measure(plane, kubeconfig, selectors, args.settle, log)
            rows.append((args.pods, "with" if selectors else "without", ready, rss, peak))
    finally:
        plane.stop()

    print("| unrelated pods | label selectors | start to pods watch (s) | RSS (MiB) | peak (MiB) |")
    print("|---|---|---|---|---|")
    for pods, mode, ready, rss, peak in rows:
        print(f"| {pods} | {mode} | {ready:.1f} | {rss:.0f} | {peak:.0f} |")
    print(f"\nRSS {args.settle:g} s after the operator's watch of pods opened")


if __name__ == "__main__":
    main()
