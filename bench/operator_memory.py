"""How much memory the operator needs in a cluster full of pods that are not its own, with the
server-side label selectors on its watches (issue 16 item 7) and without them.

The control plane is the tests' (tests/cluster/controlplane.py). N unrelated pods -- no
`society.dev/society` label, each asking for a scheduler that does not exist, so they stay Pending
and cost the scheduler and kwok nothing -- are created in parallel batches. Then the operator is
started as a pod runs it (`society operator`, its own process, a ServiceAccount token), once per
mode, after the pods exist: kopf lists every pod its selector admits, hands each to its handlers,
and then watches. Measured, per mode: how long until the operator's watch of pods is open (from
the apiserver's audit log; the end of that initial digestion), and, a settle time later (or at the
timeout), the process's resident memory (VmRSS), its peak (VmHWM) and its CPU time. A first run
with no unrelated pods is the baseline. "without" sets SOCIETY_WATCH_SELECTORS=false, which
exists for this.

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
from dataclasses import dataclass
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, from field 3 on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pods_watch_open(plane: ControlPlane, since: int) -> bool:
    """Whether the operator has opened its watch of pods: kopf lists first, hands every listed
    object to its handlers, and only then watches."""
    for event in plane.audit_events()[since:]:
        ref = event.get("objectRef") or {}
        if event.get("verb") == "watch" and ref.get("resource") == "pods":
            return True
    return False


@dataclass(frozen=True)
class Row:
    pods: int
    selectors: bool
    ready: float | None  # seconds from the start to the pods watch; None: not within the timeout
    cpu: float
    rss: float
    peak: float


def measure(
    plane: ControlPlane,
    kubeconfig: str,
    pods: int,
    selectors: bool,
    args: argparse.Namespace,
    log: Path,
) -> Row:
    """Start the operator, wait for its pods watch (at most `args.timeout` s) and `args.settle`
    seconds more, read its memory and CPU time, stop it."""
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
        ready = None
        while time.monotonic() - started < args.timeout:
            operator.check()
            if pods_watch_open(plane, since):
                ready = time.monotonic() - started
                time.sleep(args.settle)
                break
            time.sleep(1)
        operator.check()
        rss, peak = memory_mib(operator.popen.pid)
        cpu = cpu_seconds(operator.popen.pid)
    finally:
        stop_processes([operator])
    return Row(pods, selectors, ready, cpu, rss, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10000, help="unrelated pods in the cluster")
    parser.add_argument("--workers", type=int, default=8, help="parallel pod creations")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the watch opens")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for it")
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
        rows.append(measure(plane, kubeconfig, 0, True, args, workdir / "operator-0.log"))
        took = create_pods(plane.api, 0, args.pods, args.workers)
        print(f"created {args.pods} pods in {took:.1f}s", file=sys.stderr)
        for selectors in (True, False):
            log = workdir / f"operator-{args.pods}-{selectors}.log"
            rows.append(measure(plane, kubeconfig, args.pods, selectors, args, log))
    finally:
        plane.stop()

    print(
        "| unrelated pods | label selectors | start to pods watch (s) | operator CPU (s) "
        "| RSS (MiB) | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        ready = f"{row.ready:.1f}" if row.ready is not None else f"> {args.timeout:g}"
        print(
            f"| {row.pods} | {'with' if row.selectors else 'without'} | {ready} "
            f"| {row.cpu:.1f} | {row.rss:.0f} | {row.peak:.0f} |"
        )
    print(
        f"\nRSS and CPU time {args.settle:g} s after the operator's watch of pods opened "
        f"(or at {args.timeout:g} s if it did not)"
    )


if __name__ == "__main__":
    main()
