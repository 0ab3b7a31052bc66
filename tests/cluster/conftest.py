"""Fixtures on a real control plane (etcd, kube-apiserver, controller manager, scheduler, kwok),
started once per session and shared; a namespace per test.

Without the binaries (neither $SOCIETY_K8S_ASSETS nor ../shared/k8s) the cluster tests are
skipped with one line (test_control_plane.py says why; the other modules are not collected), and
the rest of the suite runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from ..tools import ROOT, ToolUnavailable, tool
from .assets import DEFAULT, SETTING, AssetsError, find_assets, unpack
from .controlplane import (
    ControlPlane,
    Process,
    free_port,
    kubeconfig,
    stop_processes,
    wait_for,
)
from .kubelet import ScriptedKubelet

CRD = ROOT / "crds" / "society.yaml"

NO_ASSETS = f"no Kubernetes control-plane binaries: set {SETTING} or provide {DEFAULT}"
try:
    ASSETS: Path | AssetsError | None = find_assets()
except AssetsError as error:  # a setting that names the wrong directory fails, loudly
    ASSETS = error
if ASSETS is None:
    # One skipped module (test_control_plane.py) says why, in one line; the others stay out.
    collect_ignore = [
        path.name
        for path in Path(__file__).parent.glob("test_*.py")
        if path.name != "test_control_plane.py"
    ]
CHART = ROOT / "charts" / "society-operator"
RELEASE, OPERATOR_NAMESPACE = "society-operator", "society-system"
# The chart's ServiceAccount, as the apiserver names the operator's requests.
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"


class Kubectl:
    """kubectl (and helm) with the control plane's admin kubeconfig, or another one."""

    def __init__(self, kubectl: Path, helm: Path, kubeconfig: Path) -> None:
        self.kubectl, self.helm_path, self.kubeconfig = kubectl, helm, kubeconfig

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HELM_CACHE_HOME"] = str(self.kubeconfig.parent / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(self.kubeconfig.parent / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.kubeconfig.parent / "helm" / "data")
        return env

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        return self._run([str(self.kubectl), *args], input, check, timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 120):
        return self._run([str(self.helm_path), *args], None, check, timeout)

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float):
        done = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self._env(), timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stderr}{done.stdout}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any] | str, *args: str, check: bool = True):
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.run("apply", "-f", "-", *args, input=text, check=check)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if isinstance(ASSETS, AssetsError):
        pytest.fail(str(ASSETS), pytrace=False)
    # The operator's requests (its ServiceAccount's) go to the audit log, for tests to count.
    plane = ControlPlane(unpack(ASSETS), audit_users=(OPERATOR_USER,))
    plane.start()
    print(f"\ncontrol plane up in {plane.started_in:.1f}s at {plane.server}")
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    try:
        return Kubectl(tool("kubectl"), tool("helm"), control_plane.kubeconfig)
    except ToolUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> kubernetes.client.ApiClient:
    return control_plane.api


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> dict[str, Any]:
    """The Society CRD, installed as docs/install.md says, and Established."""
    kubectl.run("apply", "--server-side", "-f", str(CRD))
    # Right after the apply, the CRD may have no conditions yet, and kubectl wait then fails
    # (".status.conditions accessor error") instead of waiting: retry it.
    wait_for(
        lambda: (
            kubectl.run(
                "wait", "--for=condition=Established", "crd/societies.society.dev", check=False
            ).returncode
            == 0
        ),
        "the Society CRD Established",
        every=0.5,
    )
    # The apiserver publishes the CRD's OpenAPI (what kubectl explain reads) a moment later.
    wait_for(
        lambda: kubectl.run("explain", "societies", check=False).returncode == 0,
        "the Society OpenAPI schema published",
        every=0.5,
    )
    return kubectl.json("get", "crd", "societies.society.dev")


def _namespace_name(node: pytest.Item) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", node.name.lower()).strip("-")[:40].strip("-")
    return f"{base}-{os.urandom(2).hex()}"


def create_namespace(kubectl: Kubectl, api, name: str) -> str:
    kubectl.run("create", "namespace", name)
    core = kubernetes.client.CoreV1Api(api)

    def default_account() -> bool:
        accounts = core.list_namespaced_service_account(name).items
        return any(a.metadata.name == "default" for a in accounts)

    wait_for(default_account, f"the default ServiceAccount of namespace {name}")
    return name


@pytest.fixture
def namespace(request, kubectl: Kubectl, api) -> Iterator[str]:
    """A fresh namespace for the test, deleted (without waiting) after it."""
    name = create_namespace(kubectl, api, _namespace_name(request.node))
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubelet(api, namespace: str) -> Iterator[ScriptedKubelet]:
    with ScriptedKubelet(api, namespace) as running:
        yield running


# --- the chart and the operator ---


@pytest.fixture(scope="session")
def chart_release(kubectl: Kubectl, crd) -> str:
    """The chart with its default values, installed as docs/install.md says (the CRD is there
    already, so helm leaves it alone): the operator's ServiceAccount and RBAC come from it."""
    kubectl.helm(
        *("install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE),
        *("--create-namespace", "--wait", "--timeout", "90s"),
    )
    return RELEASE


@pytest.fixture(scope="session")
def operator_kubeconfig(control_plane: ControlPlane, kubectl: Kubectl, chart_release) -> Path:
    """A kubeconfig holding a token of the chart's ServiceAccount: the real authorizer decides
    what the operator may do, from the chart's RBAC alone."""
    token = kubectl.run(
        *("create", "token", chart_release, "-n", OPERATOR_NAMESPACE, "--duration", "4h")
    ).stdout.strip()
    path = control_plane.workdir / "operator.kubeconfig"
    path.write_text(kubeconfig(control_plane.server, control_plane.ca, token))
    path.chmod(0o600)
    return path


class Operator:
    """`society operator` as its own process, as the chart's Deployment runs it (with the
    default values: the whole cluster; `args` add e.g. --namespace)."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str) -> None:
        self.kubeconfig, self.log, self.args = kubeconfig, log, args
        self.process: Process | None = None

    def start(self) -> Operator:
        self.health_port, self.metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIETY_")}
        env |= {"KUBECONFIG": str(self.kubeconfig), "POD_NAMESPACE": OPERATOR_NAMESPACE}
        self.process = Process(
            "society-operator",
            [
                str(Path(sys.executable).with_name("society")),
                "operator",
                *("--health-port", str(self.health_port)),
                *("--metrics-port", str(self.metrics_port)),
                *("--no-leader-elect", "--resync-seconds", "5"),
                *self.args,
            ],
            self.log,
            env=env,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process])
            self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """The operator, started and stopped around the test; its log is printed (the end of it)
    when the test fails. The test's namespace comes first, so the operator stops before the
    namespace goes."""
    running = Operator(operator_kubeconfig, tmp_path / "operator.log").start()
    yield running
    running.stop()
    print(running.output()[-20000:])
