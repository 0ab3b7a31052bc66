"""How the operator keeps up with many Societies on a real control plane: reaction latency, API
requests, memory.

The control plane is the tests' (tests/cluster/controlplane.py): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok, on 127.0.0.1, with simulated CPU nodes. The
operator runs as it does in a pod -- `society operator`, its own process -- with a
ServiceAccount token. This process plays the trainer: it finishes every Job pod with what the
step would report (tests/cluster/kubelet.py's results), for every Society at once, through two
iterations (serve, debate, train, serve, debate); kwok makes the servers Ready. Measured:

- reaction latency: from a Job seen Complete (through a watch) to the next phase's children
  seen created -- the last training Job after the debate, the next iteration's server after the
  last training Job;
- API requests the operator sends per Society iteration, from the kube-apiserver's audit log
  of the operator's ServiceAccount (a watch counted once per stream);
- the operator process's peak RSS, and its CPU time (user + system); its RSS as it goes in the
  progress lines.

    .venv/bin/python bench/operator_scale.py --societies 200 --timeout 900   # docs/benchmarks.md
    .venv/bin/python bench/operator_scale.py --societies 3 --timeout 120   # the CI smoke run

`--keep DIR` keeps the operator's log, the audit log and the times this process saw (JSON), to
take a latency apart: watch to operator, operator to request, request to answer.

Needs the control-plane binaries (../shared/k8s or $SOCIETY_K8S_ASSETS), as tests/cluster does.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the control plane lives with the tests

from tests.cluster.assets import DEFAULT, SETTING, find_assets, unpack  # noqa: E402
from tests.cluster.controlplane import (  # noqa: E402
    ControlPlane,
    Pool,
    Process,
    kubeconfig,
    stop_processes,
    wait_for,
)
from tests.cluster.kubelet import EXIT_CODE, JOB_NAME, MESSAGE, expected_outcome  # noqa: E402

from society_operator.kube.client import USER_AGENT  # noqa: E402

NS, OPERATOR_NS, ACCOUNT = "bench", "society-system", "society-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{ACCOUNT}"
SOCIETY_LABEL, ITERATION_LABEL = "society.dev/society", "society.dev/iteration"
AGENTS = 2
CLAIM = "bench-artifacts"
# Simulated nodes with room for every pod (kwok plays their kubelet; nothing really runs).
POOLS = (Pool("cpu", 4, {"cpu": "100000", "memory": "100Ti", "pods": "10000"}),)
# The controllers' default client rate limits (20 requests/s for the controller manager) would
# make the Job controller, not the operator, the bottleneck: raised, as large clusters do.
QPS = ("--kube-api-qps", "500", "--kube-api-burst", "1000")
CONTROLLER_FLAGS = {
    "kube-controller-manager": (*QPS, "--concurrent-job-syncs", "50"),
    "kube-scheduler": QPS,
}


def society(name: str) -> dict[str, Any]:
    """examples/tiny.yaml with 2 agents, 1 round and one finetuning iteration, on one shared
    claim (the control plane has no volume provisioner: one claim bound to one PersistentVolume).
    The debate is pinned here so that the example's changes do not change what is measured: one
    generation Job per agent, no critics."""
    manifest = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    manifest["metadata"] = {"name": name, "namespace": NS}
    manifest["spec"]["agents"] = AGENTS
    manifest["spec"]["debate"] = {"rounds": 1, "summarize": False}
    manifest["spec"]["finetune"]["iterations"] = 1
    manifest["spec"]["task"] |= {"trainSize": 8, "evalSize": 8}
    manifest["spec"]["storage"] = {"claimName": CLAIM}
    return manifest


class Watcher(threading.Thread):
    """A watch of one kind in NS, restarted as watches are; each event goes to `on_event` with
    the wall-clock time it arrived, its object as JSON. Not deserialized into the client's
    models: that ran on the same 2 cores as what is measured (this process was at about a fifth
    of a core at 1000 Societies), and its time lay inside the latencies measured."""

    def __init__(self, list_call, on_event, label_selector: str | None = None) -> None:
        super().__init__(daemon=True)
        self.list_call, self.on_event, self.selector = list_call, on_event, label_selector
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        version = None
        while not self.stopped.is_set():
            try:
                if version is None:
                    answer = self.list_call(
                        NS, label_selector=self.selector, _preload_content=False
                    )
                    listed = json.loads(answer.data)
                    version = listed["metadata"]["resourceVersion"]
                    for obj in listed["items"]:
                        self.on_event("ADDED", obj, time.time())
                stream = kubernetes.watch.Watch().stream(
                    self.list_call,
                    NS,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                )
                for event in stream:
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], event["object"], time.time())
                    if self.stopped.is_set():
                        return
            except kubernetes.client.ApiException as error:
                if error.status == 410:
                    version = None  # expired: list again
                else:
                    self.errors.append(error)
                    time.sleep(1)
            except Exception as error:  # noqa: BLE001 -- reported at the end
                self.errors.append(error)
                time.sleep(1)


class Bench:
    def __init__(self, plane: ControlPlane) -> None:
        self.api = plane.api
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.batch = kubernetes.client.BatchV1Api(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.lock = threading.Lock()
        self.job_added: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        # The apiserver's times (1 s resolution): a Job's completionTime, a child's creation.
        self.job_completed_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}
        self.server_added: dict[tuple[str, str], float] = {}  # (deployment, iteration) -> when
        self.finished: set[str] = set()  # pod uids annotated
        self.pods: queue.Queue = queue.Queue()
        self.patch_errors: list[BaseException] = []
        self.loads: list[float] = []  # the machine's 1-minute load average, every 2 s

    def on_job(self, kind: str, job: dict[str, Any], when: float) -> None:
        meta, status = job["metadata"], job.get("status") or {}
        name = meta["name"]
        with self.lock:
            self.job_added.setdefault(name, when)
            self.created_at.setdefault(name, timestamp(meta["creationTimestamp"]))
            conditions = status.get("conditions") or []
            if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
                self.job_complete.setdefault(name, when)
                if status.get("completionTime"):
                    completed = timestamp(status["completionTime"])
                    self.job_completed_at.setdefault(name, completed)

    def on_deployment(self, kind: str, deployment: dict[str, Any], when: float) -> None:
        meta = deployment["metadata"]
        iteration = (meta.get("labels") or {}).get(ITERATION_LABEL, "")
        with self.lock:
            self.server_added.setdefault((meta["name"], iteration), when)
            created = timestamp(meta["creationTimestamp"])
            self.created_at.setdefault(f"{meta['name']}/{iteration}", created)

    def on_pod(self, kind: str, pod: dict[str, Any], when: float) -> None:
        meta = pod["metadata"]
        if kind == "DELETED" or (pod.get("status") or {}).get("phase") != "Running":
            return
        if EXIT_CODE in (meta.get("annotations") or {}) or meta["uid"] in self.finished:
            return
        self.finished.add(meta["uid"])
        self.pods.put(pod)

    def finish_pods(self) -> None:
        """Annotate each running Job pod with what its step reports (kwok ends it so)."""
        with ThreadPoolExecutor(4) as executor:
            while True:
                pod = self.pods.get()
                if pod is None:
                    return
                executor.submit(self._finish, pod)

    def _finish(self, pod: dict[str, Any]) -> None:
        try:
            outcome = expected_outcome(pod)
            patch = {"metadata": {"annotations": {EXIT_CODE: "0", MESSAGE: outcome.message}}}
            name = pod["metadata"]["name"]
            self.core.patch_namespaced_pod(name, NS, patch, _preload_content=False)
        except Exception as error:  # noqa: BLE001 -- reported at the end
            self.patch_errors.append(error)


def operator_account(plane: ControlPlane) -> str:
    """A ServiceAccount for the operator (cluster-admin: the bench is about load, the chart's
    RBAC is tested in tests/cluster), and a token of it."""
    core = kubernetes.client.CoreV1Api(plane.api)
    core.create_namespace({"metadata": {"name": OPERATOR_NS}})
    core.create_namespaced_service_account(OPERATOR_NS, {"metadata": {"name": ACCOUNT}})
    kubernetes.client.RbacAuthorizationV1Api(plane.api).create_cluster_role_binding(
        {
            "metadata": {"name": "society-operator-bench"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": OPERATOR_NS}],
        }
    )
    request = {"spec": {"audiences": [], "expirationSeconds": 4 * 3600}}
    token = core.create_namespaced_service_account_token(ACCOUNT, OPERATOR_NS, request)
    path = plane.workdir / "operator.kubeconfig"
    path.write_text(kubeconfig(plane.server, plane.ca, token.status.token))
    return str(path)


def install(plane: ControlPlane) -> None:
    crd = yaml.safe_load((ROOT / "crds" / "society.yaml").read_text())
    extensions = kubernetes.client.ApiextensionsV1Api(plane.api)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        got = extensions.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = got.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, "the Society CRD Established")
    core = kubernetes.client.CoreV1Api(plane.api)
    core.create_namespace({"metadata": {"name": NS}})
    wait_for(lambda: core.list_namespaced_service_account(NS).items, "the default ServiceAccount")
    core.create_persistent_volume(
        {
            "metadata": {"name": "bench-pv"},
            "spec": {
                "capacity": {"storage": "10Ti"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": "/tmp/society-bench"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "10Ti"}},
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim(CLAIM, NS).status.phase == "Bound",
        "the artifact claim Bound",
    )


def phases(plane: ControlPlane) -> collections.Counter:
    """The Societies by phase. A list every 2 s (7 MB of JSON at 1000): a watch of them in this
    process instead made its watch of the Jobs lag behind (to 4 s p95 for half a minute), which
    is what the latency is measured by."""
    listed = kubernetes.client.CustomObjectsApi(plane.api).list_namespaced_custom_object(
        "society.dev", "v1alpha1", NS, "societies"
    )
    return collections.Counter(
        (item.get("status") or {}).get("phase") or "-" for item in listed["items"]
    )


def memory_mib(pid: int, field: str = "VmHWM") -> float:
    """A process's peak resident memory (VmHWM), or its resident memory now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def timestamp(text: str) -> float:
    """An apiserver time (RFC 3339, e.g. 2026-12-03T09:00:00Z) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def audit_time(event: dict[str, Any]) -> float:
    return timestamp(event["stageTimestamp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--societies", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600, help="for the whole run, seconds")
    parser.add_argument("--create-rate", type=float, default=0, help="Societies/s (0: at once)")
    parser.add_argument(
        "--keep", type=Path, help="save the operator's log, the audit log and the times seen here"
    )
    args = parser.parse_args()
    n = args.societies

    assets = find_assets()
    if assets is None:
        raise SystemExit(f"no Kubernetes control-plane binaries: set {SETTING} or {DEFAULT}")
    plane = ControlPlane(
        unpack(assets),
        audit_users=(OPERATOR_USER,),
        pools=POOLS,
        volumes={},
        extra_args=CONTROLLER_FLAGS,
    )
    workdir = plane.workdir  # removed by plane.stop()
    plane.start()
    print(f"control plane up in {plane.started_in:.1f}s ({workdir})", file=sys.stderr)
    operator: Process | None = None
    bench = Bench(plane)
    watchers = [
        Watcher(bench.batch.list_namespaced_job, bench.on_job),
        Watcher(bench.apps.list_namespaced_deployment, bench.on_deployment),
        Watcher(bench.core.list_namespaced_pod, bench.on_pod, label_selector=JOB_NAME),
    ]
    finisher = threading.Thread(target=bench.finish_pods, daemon=True)
    try:
        install(plane)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIETY_")}
        env |= {"KUBECONFIG": operator_account(plane), "POD_NAMESPACE": OPERATOR_NS}
        command = [str(Path(sys.executable).with_name("society")), "operator"]
        command += ["--no-leader-elect", "--health-port", "0", "--metrics-port", "0"]
        operator = Process("society-operator", command, workdir / "operator.log", env=env)
        for watcher in watchers:
            watcher.start()
        finisher.start()
        custom = kubernetes.client.CustomObjectsApi(plane.api)
        names = [f"s{i:04d}" for i in range(n)]
        started = time.monotonic()
        deadline = started + args.timeout

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                "society.dev", "v1alpha1", NS, "societies", society(name)
            )

        with ThreadPoolExecutor(4) as executor:
            for name in names:
                executor.submit(create, name)
                if args.create_rate:
                    time.sleep(1 / args.create_rate)
        last_report = 0.0
        timed_out = ""
        while True:
            operator.check()
            plane.check()
            counts = phases(plane)
            bench.loads.append(os.getloadavg()[0])
            if counts.get("Succeeded", 0) + counts.get("Failed", 0) >= n:
                break
            now = time.monotonic()
            if now > deadline:  # report what was measured, then fail
                timed_out = f"not all finished after {args.timeout:.0f}s: {dict(counts)}"
                break
            if now - last_report > 15:
                rss = memory_mib(operator.popen.pid, "VmRSS")  # where the peak comes from
                print(f"{now - started:5.0f}s {dict(counts)} rss {rss:.0f} MiB", file=sys.stderr)
                last_report = now
            time.sleep(2)
        elapsed = time.monotonic() - started
        peak = memory_mib(operator.popen.pid)
        cpu = cpu_seconds(operator.popen.pid)
        failed = counts.get("Failed", 0)
    finally:
        if operator is not None:
            stop_processes([operator])
        for watcher in watchers:
            watcher.stopped.set()
        bench.pods.put(None)
        events = plane.audit_events()
        if args.keep:
            keep(args.keep, plane, bench)
        plane.stop()

    report(bench, names, events, elapsed, peak, cpu, failed)
    if timed_out:
        raise SystemExit(timed_out)


def keep(folder: Path, plane: ControlPlane, bench: Bench) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for log in (plane.workdir / "operator.log", plane.audit_log):
        if log is not None and log.exists():
            shutil.copy(log, folder / log.name)
    times = {
        "job_added": bench.job_added,
        "job_complete": bench.job_complete,
        "job_completed_at": bench.job_completed_at,
        "created_at": bench.created_at,
        "server_added": {f"{name}/{it}": t for (name, it), t in bench.server_added.items()},
    }
    (folder / "times.json").write_text(json.dumps(times))


def latency_parts(bench: Bench, names, events) -> dict[str, list[float]]:
    """Per Society, its debate -> training latency in three parts: the operator's reaction (the
    debate Job seen Complete here -> the apiserver received the last training Job's create), the
    apiserver's create, and this script's watch (the create answered -> the Job seen here). The
    first part is what the operator does; the others it does not touch."""
    creates = {}  # Job name -> (request received, answered), the apiserver's clock
    for event in events:
        ref = event.get("objectRef") or {}
        if event.get("verb") == "create" and ref.get("resource") == "jobs" and ref.get("name"):
            received = timestamp(event["requestReceivedTimestamp"])
            creates[ref["name"]] = (received, timestamp(event["stageTimestamp"]))
    parts: dict[str, list[float]] = {"reaction": [], "apiserver": [], "watch": []}
    for name in names:
        done = bench.job_complete.get(f"{name}-debate-it0")
        trains = [f"{name}-train-gen-{a}-it1" for a in range(AGENTS)]
        if done is None or not all(t in creates and t in bench.job_added for t in trains):
            continue
        parts["reaction"].append(max(creates[t][0] for t in trains) - done)
        parts["apiserver"].append(max(creates[t][1] - creates[t][0] for t in trains))
        parts["watch"].append(max(bench.job_added[t] - creates[t][1] for t in trains))
    return parts


def report(
    bench: Bench, names, events, elapsed: float, peak: float, cpu: float, failed: int
) -> None:
    n = len(names)
    trains = [f"train-gen-{a}-it1" for a in range(AGENTS)]
    to_training, to_serving, by_apiserver = [], [], []
    for name in names:
        done = bench.job_complete.get(f"{name}-debate-it0")
        made = [bench.job_added.get(f"{name}-{job}") for job in trains]
        if done and all(made):
            to_training.append(max(made) - done)
        trained = [bench.job_complete.get(f"{name}-{job}") for job in trains]
        server = bench.server_added.get((f"{name}-vllm", "1"))
        if all(trained) and server:
            to_serving.append(server - max(trained))
        # The same two, by the apiserver's clock: completionTime -> creationTimestamp.
        done = bench.job_completed_at.get(f"{name}-debate-it0")
        made = [bench.created_at.get(f"{name}-{job}") for job in trains]
        if done and all(made):
            by_apiserver.append(max(made) - done)
        trained = [bench.job_completed_at.get(f"{name}-{job}") for job in trains]
        server = bench.created_at.get(f"{name}-vllm/1")
        if all(trained) and server:
            by_apiserver.append(server - max(trained))

    print(f"{n} Societies x 2 iterations ({AGENTS} agents, LoRA), run in {elapsed:.1f} s", end="")
    print(f" ({failed} Failed)" if failed else "")
    print()
    print("| measure | p50 | p95 | max |")
    print("|---|---|---|---|")
    for label, values in (
        ("debate Job complete -> all training Jobs created (s)", to_training),
        ("last training Job complete -> next server created (s)", to_serving),
        ("either (s)", to_training + to_serving),
        ("either, by the apiserver's timestamps (s, +-1)", by_apiserver),
    ):
        if values:
            print(
                f"| {label} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} "
                f"| {max(values):.2f} |"
            )
    print()
    parts = latency_parts(bench, names, events)
    if parts["reaction"]:
        print("The debate -> training Jobs step taken apart (the audit log's request times):")
        print()
        print("| part | p50 (s) | p95 (s) |")
        print("|---|---:|---:|")
        for label, values in (
            ("debate Job seen Complete -> the last training Job's create received", "reaction"),
            ("the create in the apiserver (the slower of the two)", "apiserver"),
            ("the create answered -> seen by this script's watch (the later)", "watch"),
        ):
            values = parts[values]
            print(f"| {label} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} |")
        print()
    # One audit event per request (ResponseComplete); a watch also logs ResponseStarted, and a
    # watch still open at the end only that: count watches by their start.
    calls: collections.Counter = collections.Counter()
    agents: collections.Counter = collections.Counter()
    for event in events:
        verb = event.get("verb")
        stage = event.get("stage")
        if (verb == "watch") != (stage == "ResponseStarted"):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        calls[(verb, resource)] += 1
        ua = event.get("userAgent", "")
        agents["society-operator" if ua.startswith(USER_AGENT) else ua.split("/")[0]] += 1
    requests = sum(c for (verb, _), c in calls.items() if verb not in ("list", "watch"))
    streams = sum(c for (verb, _), c in calls.items() if verb in ("list", "watch"))
    print(
        f"operator API requests: {requests} in all, {requests / (2 * n):.1f} per Society "
        f"iteration (by user agent: {dict(agents)}):"
    )
    for (verb, resource), count in calls.most_common():
        if verb not in ("list", "watch"):
            print(f"  {verb} {resource}: {count / (2 * n):.2f}")
    print(f"  list and watch (kopf's caches, for all Societies at once): {streams} in all")
    print(f"operator peak RSS: {peak:.0f} MiB, CPU {cpu:.0f} s ({cpu / elapsed:.0%} of a core)")
    print(
        f"machine load (1-minute load average, {os.cpu_count()} cores) during the run: "
        f"mean {statistics.mean(bench.loads):.1f}, max {max(bench.loads):.1f}"
    )
    problems = bench.patch_errors[:3]
    if problems:
        print(f"({len(bench.patch_errors)} pod patches failed, e.g. {problems})", file=sys.stderr)


if __name__ == "__main__":
    main()
