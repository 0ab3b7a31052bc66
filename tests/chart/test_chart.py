"""The Helm chart, linted and rendered by helm with default and non-default values; every rendered
built-in object validated as the apiserver would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from society_operator import __version__, cli
from society_operator.settings import Settings

from ..conftest import ROOT
from ..unit.test_builders import K8S_VERSION

CHART = ROOT / "charts" / "society-operator"
RELEASE, NAMESPACE = "society", "society-system"
FULLNAME = "society-society-operator"

# Everything non-default at once: namespaced RBAC, ServiceMonitor and dashboard on, one replica
# without leader election, mirrored images.
CUSTOM = {
    "replicaCount": 1,
    "leaderElection": {"enabled": False},
    "watchNamespaces": ["research", "team-b"],
    "image": {"repository": "registry.example/society/operator", "tag": "dev"},
    "operator": {
        "vllmImage": "registry.example/vllm/vllm-openai:v0.26.0",
        "trainerImage": "registry.example/society/trainer:dev",
        "defaultClaimSize": "500Gi",
        "embeddingModel": "sentence-transformers/all-MiniLM-L6-v2",
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "dashboard": {"enabled": True, "namespace": "monitoring"},
}


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60)


def values_file(tmp_path_factory, values: dict) -> str:
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(helm: Path, *args: str) -> list[dict]:
    done = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--kube-version",
        f"v{K8S_VERSION}.0",
        *args,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def default(helm) -> list[dict]:
    return render(helm)


@pytest.fixture(scope="module")
def custom(helm, tmp_path_factory) -> list[dict]:
    return render(helm, "-f", values_file(tmp_path_factory, CUSTOM))


def find(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None):
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    return found


def one(objects: list[dict], kind: str, **kw) -> dict:
    (found,) = find(objects, kind, **kw)
    return found


def container(objects: list[dict]) -> dict:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(objects)["env"]}


@pytest.mark.parametrize("values", [{}, CUSTOM], ids=["default", "custom"])
def test_helm_lint(helm, tmp_path_factory, values):
    done = run_helm(
        helm, "lint", "--strict", str(CHART), "-f", values_file(tmp_path_factory, values)
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rendered", ["default", "custom"])
def test_every_built_in_object_is_valid(rendered, request):
    objects = request.getfixturevalue(rendered)
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD's kind, checked by test_service_monitor_scrapes_the_metrics_service
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount"} <= kinds


def test_defaults_two_replicas_leader_election_cluster_wide(default):
    deployment = one(default, "Deployment", name=FULLNAME, namespace=NAMESPACE)
    assert deployment["spec"]["replicas"] == 2
    operator = container(default)
    assert operator["image"] == f"ghcr.io/society-operator/operator:{__version__}"
    assert operator["args"] == [
        "--health-port=8080",
        "--metrics-port=9090",
        "--leader-elect",
        "--lease-name=society-operator",
        f"--lease-namespace={NAMESPACE}",
    ]
    assert not any(a.startswith("--namespace") for a in operator["args"])
    assert one(default, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not find(default, "ServiceMonitor") and not find(default, "ConfigMap")


@pytest.mark.parametrize("rendered", ["default", "custom"])
def test_the_arguments_are_ones_society_operator_takes(rendered, request):
    """The Deployment's args, parsed by the `society operator` command itself."""
    args = container(request.getfixturevalue(rendered))["args"]
    command = cli.main.commands["operator"]
    params = command.make_context("operator", list(args)).params
    ports = {
        p["name"]: p["containerPort"] for p in container(request.getfixturevalue(rendered))["ports"]
    }
    assert (params["health_port"], params["metrics_port"]) == (ports["health"], ports["metrics"])
    if rendered == "default":
        assert params["namespaces"] == () and params["leader_elect"] is True
        assert params["lease_namespace"] == NAMESPACE
    else:
        assert params["namespaces"] == ("research", "team-b") and params["leader_elect"] is False


def test_the_operator_settings_default_to_the_operators_own(default):
    """The chart's defaults and settings.py's agree, so leaving a value unset changes nothing."""
    settings = Settings()
    assert env(default) == {
        "POD_NAME": None,
        "POD_NAMESPACE": None,
        "SOCIETY_VLLM_IMAGE": settings.vllm_image,
        "SOCIETY_TRAINER_IMAGE": settings.trainer_image,
        "SOCIETY_ARTIFACTS_MOUNT": settings.artifacts_mount,
        "SOCIETY_DEFAULT_CLAIM_SIZE": settings.default_claim_size,
        "SOCIETY_EMBEDDING_MODEL": "",
        "SOCIETY_NETWORK_POLICY": "true",
    }
    assert Settings.from_env(env(default)) == settings
    downward = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container(default)["env"]
        if "valueFrom" in e
    }
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_chart_version_follows_the_project():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__


def test_non_root_read_only_with_a_writable_tmp_and_a_liveness_probe(default):
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    operator = container(default)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert operator["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    probe = operator["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert probe == {"path": "/healthz", "port": "health"} and ports["health"] == 8080
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == one(default, "ServiceAccount")["metadata"]["name"]


def rules(role: dict) -> list[tuple]:
    return [
        (
            tuple(r["apiGroups"]),
            tuple(r["resources"]),
            tuple(r["verbs"]),
            tuple(r.get("resourceNames", ())),
        )
        for r in role["rules"]
    ]


def test_cluster_wide_rbac_is_one_cluster_role_and_the_lease_role(default):
    cluster = rules(one(default, "ClusterRole"))
    granted = {(g, res) for groups, resources, _, _ in cluster for g in groups for res in resources}
    assert ("society.dev", "societies") in granted and ("batch", "jobs") in granted
    assert ("", "namespaces") not in granted  # kopf watches namespaces only when given some
    # Secrets: created (the servers' API key), never read; the keys and the HF token reach
    # pods by secretKeyRef only.
    secrets = [verbs for _, resources, verbs, _ in cluster if "secrets" in resources]
    assert secrets == [("create",)]
    policies = [verbs for _, resources, verbs, _ in cluster if "networkpolicies" in resources]
    assert policies == [("create",)]  # networkPolicy.enabled, the default
    assert not any("*" in verbs or "*" in resources for _, resources, verbs, _ in cluster)
    lease = one(default, "Role", namespace=NAMESPACE)
    assert rules(lease) == [
        (("coordination.k8s.io",), ("leases",), ("create",), ()),
        (("coordination.k8s.io",), ("leases",), ("get", "update"), ("society-operator",)),
    ]
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        (subject,) = one(default, binding)["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}


def test_namespaced_rbac_grants_the_same_rules_in_each_watched_namespace(default, custom):
    cluster_wide = set(rules(one(default, "ClusterRole")))
    for namespace in CUSTOM["watchNamespaces"]:
        role = one(custom, "Role", namespace=namespace)
        binding = one(custom, "RoleBinding", namespace=namespace)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert set(rules(role)) < cluster_wide  # all but the cluster-scoped reads
    cluster_scoped = rules(one(custom, "ClusterRole"))
    assert cluster_scoped == [
        (("apiextensions.k8s.io",), ("customresourcedefinitions",), ("list", "watch"), ()),
        (("",), ("namespaces",), ("list", "watch"), ()),
    ]
    assert not find(custom, "Role", namespace=NAMESPACE)  # no Lease without leader election
    operator = container(custom)
    assert operator["args"][:2] == ["--namespace=research", "--namespace=team-b"]
    assert "--no-leader-elect" in operator["args"]


def test_custom_images_and_settings_reach_the_operator(custom):
    assert one(custom, "Deployment")["spec"]["replicas"] == 1
    assert not find(custom, "PodDisruptionBudget")
    assert container(custom)["image"] == "registry.example/society/operator:dev"
    assert env(custom) | {"POD_NAME": None, "POD_NAMESPACE": None} == {
        "POD_NAME": None,
        "POD_NAMESPACE": None,
        "SOCIETY_VLLM_IMAGE": "registry.example/vllm/vllm-openai:v0.26.0",
        "SOCIETY_TRAINER_IMAGE": "registry.example/society/trainer:dev",
        "SOCIETY_ARTIFACTS_MOUNT": "/artifacts",
        "SOCIETY_DEFAULT_CLAIM_SIZE": "500Gi",
        "SOCIETY_EMBEDDING_MODEL": "sentence-transformers/all-MiniLM-L6-v2",
        "SOCIETY_NETWORK_POLICY": "true",
    }


def test_network_policies_off_tells_the_operator_and_drops_their_rbac(helm):
    objects = render(helm, "--set", "networkPolicy.enabled=false")
    assert env(objects)["SOCIETY_NETWORK_POLICY"] == "false"
    assert Settings.from_env(env(objects)).network_policy is False
    cluster = rules(one(objects, "ClusterRole"))
    granted = {res for _, resources, _, _ in cluster for res in resources}
    assert "networkpolicies" not in granted and "secrets" in granted  # the API key stays


def test_service_monitor_scrapes_the_metrics_service(custom):
    monitor = one(custom, "ServiceMonitor")
    service = one(custom, "Service", name=f"{FULLNAME}-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    pods = one(custom, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    assert port["targetPort"] in {p["name"] for p in container(custom)["ports"]}


def test_dashboard_config_map_for_grafanas_sidecar(custom):
    config_map = one(custom, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "society.json").read_text())
    assert json.loads(config_map["data"]["society.json"]) == shipped


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=0", "at '/replicaCount'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("operator.defaultClaimSize=lots", "at '/operator/defaultClaimSize'"),
        ("replicas=2", "additional properties 'replicas' not allowed"),
    ],
)
def test_values_schema_rejects_a_bad_value(helm, setting, complaint):
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert done.returncode != 0
    assert "schema" in done.stderr and complaint in done.stderr, done.stderr


def test_two_replicas_need_leader_election(helm):
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", "leaderElection.enabled=false")
    assert done.returncode != 0 and "needs leaderElection.enabled" in done.stderr


def test_chart_crd_is_the_generated_one():
    chart_crd = (CHART / "crds" / "society.yaml").read_text()
    assert chart_crd == (ROOT / "crds" / "society.yaml").read_text(), (
        "charts/society-operator/crds/society.yaml differs from crds/society.yaml: run `make chart`"
    )
