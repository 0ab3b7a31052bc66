"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok as plain processes, with fake CPU, A100 and H100 node pools.

Flags are the ones ../shared/k8s/README.md says were checked together. Authentication is a static
admin token (system:masters) plus ServiceAccount tokens signed with a key made here, and RBAC
decides, so a test can act as the chart's ServiceAccount and get exactly its permissions.

Every process runs in its own process group and is told to die with this one (PR_SET_PDEATHSIG);
`stop()` ends the groups (SIGTERM, then SIGKILL), and an atexit hook and SIGTERM/SIGHUP handlers
call it too, so a failed, interrupted or killed session leaves no process or port behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

STAGES = Path(__file__).with_name("stages.yaml")
GPU = "nvidia.com/gpu"
ACCELERATOR = "cloud.google.com/gke-accelerator"
POOL_LABEL = "society.test/pool"
# The taint docs/install.md says GKE puts on GPU pools, which examples/ tolerate.
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Pool:
    """Identical fake nodes, as a cloud node pool makes them."""

    name: str
    nodes: int
    capacity: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]


# Room for many pods (500 per node). Three A100 nodes hold the 6 four-GPU training Jobs of
# examples/gsm8k-full-a100.yaml at once.
POOLS = (
    Pool("cpu", 2, {"cpu": "64", "memory": "256Gi", "pods": "500"}),
    Pool(
        "a100",
        3,
        {"cpu": "96", "memory": "1360Gi", "pods": "500", GPU: "8"},
        {ACCELERATOR: "nvidia-tesla-a100"},
        (GPU_TAINT,),
    ),
    Pool(
        "h100",
        2,
        {"cpu": "208", "memory": "1872Gi", "pods": "500", GPU: "8"},
        {ACCELERATOR: "nvidia-h100-80gb"},
        (GPU_TAINT,),
    ),
)

# ReadWriteMany hostPath volumes for claims to bind to (there is no provisioner): claims without
# a class, and the class examples/arithmetic-lora-h100.yaml asks for. A claim keeps its volume
# (Released) after its namespace is gone, and the suite makes a claim per Society: dozens.
VOLUMES = {"": 200, "premium-rwx": 12}
VOLUME_SIZE = "1Ti"


def volume(storage_class: str, size: str = VOLUME_SIZE) -> dict[str, Any]:
    """A hostPath PersistentVolume that a claim of `storage_class` ("": none) can bind."""
    name = f"pv-{storage_class or 'default'}-{secrets.token_hex(4)}"
    return {
        "metadata": {"name": name, "labels": {"society.test/volume": "hostpath"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "hostPath": {"path": f"/tmp/society-test/{name}"},
        },
    }


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """One binary in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env=env,
            )

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


def stop_processes(processes: list[Process], grace: float = 2.0) -> None:
    """SIGTERM every group at once, SIGKILL whatever is left after `grace` seconds."""
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.signal(signal.SIGKILL)
            process.popen.wait()
        process.signal(signal.SIGKILL)  # anything the binary started in its group


_RUNNING: set[ControlPlane] = set()
_HANDLED = (signal.SIGTERM, signal.SIGHUP)


def _stop_all() -> None:
    for plane in list(_RUNNING):
        plane.stop()


def _on_signal(signum, frame) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_stop_all)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0, every=0.1) -> Any:
    """Poll until `predicate` returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(every)


def kubeconfig(server: str, ca: Path, token: str, namespace: str | None = None) -> str:
    context: dict[str, str] = {"cluster": "society-test", "user": "user"}
    if namespace:
        context["namespace"] = namespace
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "society-test",
                    "cluster": {"server": server, "certificate-authority": str(ca)},
                }
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "society-test", "context": context}],
            "current-context": "society-test",
        },
        indent=2,
    )


class ControlPlane:
    """Start with `start()`, end with `stop()`; `kubeconfig` is an admin kubeconfig."""

    def __init__(
        self,
        bin_dir: Path,
        workdir: Path | None = None,
        audit_users: tuple[str, ...] = (),
        pools: tuple[Pool, ...] = POOLS,
        volumes: dict[str, int] | None = None,
        extra_args: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        # More flags for a process, by name (a benchmark raises the controllers' API QPS).
        self.extra_args = extra_args or {}
        # The fake nodes and the PersistentVolumes (by storage class) made at start.
        self.pools, self.volumes = pools, VOLUMES if volumes is None else volumes
        # The apiserver's audit log (JSON lines, at level Metadata) of these users' requests
        # alone: what a test or a benchmark counts of an operator's calls (`audit_events`).
        self.audit_users = audit_users
        self.audit_log: Path | None = None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="society-k8s-"))
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.ca = self.workdir / "pki" / "apiserver.crt"
        self.token = secrets.token_hex(16)
        self.server = ""
        self.processes: dict[str, Process] = {}
        self.started_in = 0.0
        self._lock = threading.Lock()
        self._argv: dict[str, list[str]] = {}
        if audit_users:
            self.audit_log = self.workdir / "audit.log"

    # --- lifecycle ---

    def start(self, timeout: float = 60.0) -> ControlPlane:
        begin = time.monotonic()
        _RUNNING.add(self)
        if threading.current_thread() is threading.main_thread():
            for sig in _HANDLED:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, _on_signal)
        try:
            self._start_etcd_and_apiserver(timeout)
            self._start_controllers()
            self.api = kubernetes.config.new_client_from_config(str(self.kubeconfig))
            self._create_nodes_and_volumes()
            wait_for(self._nodes_ready, "every fake node Ready and untainted", timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - begin
        return self

    def stop(self) -> None:
        with self._lock:
            if self not in _RUNNING:
                return
            _RUNNING.discard(self)
            stop_processes(list(self.processes.values())[::-1])
            if hasattr(self, "api"):
                self.api.close()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def check(self) -> None:
        """Raise if any control-plane process has died."""
        for process in self.processes.values():
            process.check()

    def _run(self, name: str, *args: str) -> Process:
        self._argv[name] = [str(self.bin_dir / name), *args, *self.extra_args.get(name, ())]
        process = Process(name, self._argv[name], self.workdir / f"{name}.log")
        self.processes[name] = process
        return process

    def restart(self, name: str, down: float = 0.0, timeout: float = 60.0) -> None:
        """Stop one process (SIGTERM, then SIGKILL), wait `down` seconds, start it again with
        the same flags (etcd keeps its data directory, the apiserver its port and certificate),
        and wait until the apiserver answers /readyz."""
        stop_processes([self.processes[name]])
        time.sleep(down)
        process = Process(name, self._argv[name], self.workdir / f"{name}.log")
        self.processes[name] = process
        wait_for(self._apiserver_ready, f"kube-apiserver /readyz after {name} restarted", timeout)

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events so far (one per request, at ResponseComplete; a watch at
        ResponseStarted too)."""
        if self.audit_log is None or not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def _start_etcd_and_apiserver(self, timeout: float) -> None:
        (self.workdir / "pki").mkdir(parents=True, exist_ok=True)
        sa_key, sa_pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
            check=True,
            capture_output=True,
        )
        audit: tuple[str, ...] = ()
        if self.audit_users:
            policy = self.workdir / "audit-policy.json"
            policy.write_text(
                json.dumps(
                    {
                        "apiVersion": "audit.k8s.io/v1",
                        "kind": "Policy",
                        "omitStages": ["RequestReceived"],
                        "rules": [
                            {"level": "Metadata", "users": list(self.audit_users)},
                            {"level": "None"},
                        ],
                    }
                )
            )
            audit = ("--audit-policy-file", str(policy), "--audit-log-path", str(self.audit_log))
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f"{self.token},admin,admin,system:masters\n")
        tokens.chmod(0o600)

        client, peer, secure = free_port(), free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._run(
            "etcd",
            *("--data-dir", str(self.workdir / "etcd")),
            *("--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url),
            *("--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url),
            *("--initial-cluster", f"default={peer_url}"),
            "--unsafe-no-fsync",
            *("--log-level", "warn"),
        )
        self._run(
            "kube-apiserver",
            *("--etcd-servers", etcd_url),
            *("--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1"),
            *("--secure-port", str(secure), "--cert-dir", str(self.workdir / "pki")),
            *("--token-auth-file", str(tokens), "--authorization-mode", "RBAC"),
            *("--service-account-issuer", "https://kubernetes.default.svc"),
            *("--service-account-key-file", str(sa_pub)),
            *("--service-account-signing-key-file", str(sa_key)),
            *("--service-cluster-ip-range", "10.96.0.0/16"),
            *("--endpoint-reconciler-type", "none"),
            *audit,
        )
        self.server = f"https://127.0.0.1:{secure}"
        wait_for(self._apiserver_ready, "kube-apiserver /readyz", timeout)
        self.kubeconfig.write_text(kubeconfig(self.server, self.ca, self.token))
        self.kubeconfig.chmod(0o600)

    def _apiserver_ready(self) -> bool:
        self.processes["etcd"].check()
        self.processes["kube-apiserver"].check()
        if not self.ca.exists():
            return False
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return response.status == 200
        except (OSError, ssl.SSLError):
            return False

    def _start_controllers(self) -> None:
        kubeconfig_args = ("--kubeconfig", str(self.kubeconfig))
        quiet = ("--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0")
        self._run(
            "kube-controller-manager",
            *kubeconfig_args,
            *quiet,
            *("--service-account-private-key-file", str(self.workdir / "sa.key")),
            *("--root-ca-file", str(self.ca)),
            "--use-service-account-credentials",
            *("--controllers", "*"),
            # Notice a node's Ready condition within a second (the default is every 5 s).
            *("--node-monitor-period", "1s"),
        )
        self._run("kube-scheduler", *kubeconfig_args, *quiet)
        self._run(
            "kwok",
            *kubeconfig_args,
            "--manage-all-nodes=true",
            *("--config", str(STAGES)),
            *("--node-lease-duration-seconds", "40"),
            *("--server-address", "127.0.0.1:0"),
            *("--cidr", "10.0.0.0/16"),
        )

    # --- nodes and volumes ---

    def _create_nodes_and_volumes(self) -> None:
        core = kubernetes.client.CoreV1Api(self.api)
        nodes = [
            {
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        POOL_LABEL: pool.name,
                        **pool.labels,
                    },
                },
                "spec": {"taints": list(pool.taints)},
                "status": {"capacity": pool.capacity, "allocatable": pool.capacity},
            }
            for pool in self.pools
            for name in pool.node_names()
        ]
        volumes = [
            volume(storage_class)
            for storage_class, count in self.volumes.items()
            for _ in range(count)
        ]
        with ThreadPoolExecutor(8) as executor:
            done = [executor.submit(core.create_node, node) for node in nodes]
            done += [executor.submit(core.create_persistent_volume, pv) for pv in volumes]
            for future in done:
                future.result()

    def _nodes_ready(self) -> bool:
        self.check()
        nodes = kubernetes.client.CoreV1Api(self.api).list_node().items
        expected = sum(pool.nodes for pool in self.pools)
        ready = [
            n
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            and not any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints or [])
        ]
        return len(ready) >= expected
