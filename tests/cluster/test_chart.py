"""The Helm chart on a real apiserver: install with default and non-default values, upgrade and
uninstall as docs/install.md and docs/operations.md say."""

from __future__ import annotations

import json

import yaml

from ..conftest import ROOT
from .conftest import CHART, CRD, OPERATOR_NAMESPACE, create_namespace

# A stand-in for the Prometheus operator's CRD, which kube-prometheus-stack installs: enough for
# the apiserver to accept the chart's ServiceMonitor.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "listKind": "List"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_default_install_runs_the_operator_deployment(kubectl, chart_release):
    """With the default values: two replicas with leader election, a ClusterRole, Ready."""
    deployment = kubectl.json("get", "deployment", chart_release, "-n", OPERATOR_NAMESPACE)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"].get("readyReplicas") == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and not any(a.startswith("--namespace") for a in args)
    kubectl.run("get", "clusterrole,clusterrolebinding", chart_release)
    kubectl.run("get", "serviceaccount", chart_release, "-n", OPERATOR_NAMESPACE)
    kubectl.run("get", "service", f"{chart_release}-metrics", "-n", OPERATOR_NAMESPACE)
    # The CRD was there before (kubectl apply --server-side): helm left it alone, Established.
    kubectl.run("wait", "--for=condition=Established", "crd/societies.society.dev")


def test_custom_values_install_upgrade_and_uninstall(kubectl, api, crd, tmp_path):
    release, namespace = "custom", "custom-system"
    fullname = f"{release}-society-operator"
    watched = [create_namespace(kubectl, api, f"watched-{i}") for i in range(2)]
    create_namespace(kubectl, api, "monitoring")
    kubectl.apply(SERVICE_MONITOR_CRD, "--server-side")
    kubectl.run("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    values = {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "watchNamespaces": watched,
        "operator": {"trainerImage": "registry.example/society/trainer:dev"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "dashboard": {"enabled": True, "namespace": "monitoring"},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    kubectl.helm(
        *("install", release, str(CHART), "-n", namespace, "--create-namespace"),
        *("-f", str(values_file), "--wait", "--timeout", "90s"),
    )

    deployment = kubectl.json("get", "deployment", fullname, "-n", namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in container["args"] if a.startswith("--namespace")] == [
        f"--namespace={n}" for n in watched
    ]
    assert "--no-leader-elect" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SOCIETY_TRAINER_IMAGE"] == "registry.example/society/trainer:dev"
    for watched_namespace in watched:  # namespaced RBAC: a Role and RoleBinding in each
        kubectl.run("get", "role,rolebinding", fullname, "-n", watched_namespace)
    monitor = kubectl.json("get", "servicemonitor", fullname, "-n", namespace)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    dashboards = kubectl.json("get", "configmap", "-n", "monitoring", "-l", "grafana_dashboard=1")
    assert len(dashboards["items"]) == 1

    # Upgrading, as docs/operations.md says: the CRD first, then the release with its values.
    kubectl.run("apply", "--server-side", "-f", str(CRD))
    kubectl.helm(
        *("upgrade", release, str(CHART), "-n", namespace, "--reuse-values"),
        *("--set", "operator.trainerImage=registry.example/society/trainer:v2"),
        *("--wait", "--timeout", "90s"),
    )
    deployment = kubectl.json("get", "deployment", fullname, "-n", namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SOCIETY_TRAINER_IMAGE"] == "registry.example/society/trainer:v2"
    assert [a for a in container["args"] if a.startswith("--namespace")]  # values reused
    history = json.loads(kubectl.helm("history", release, "-n", namespace, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2]

    # A Society outlives the release: helm never deletes a chart's CRD.
    kubectl.apply(
        {
            "apiVersion": "society.dev/v1alpha1",
            "kind": "Society",
            "metadata": {"name": "kept", "namespace": watched[0]},
            "spec": {"model": {"name": "m"}, "task": {"name": "gsm8k"}},
        }
    )
    kubectl.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    for kind, name in [
        ("deployment", fullname),
        ("serviceaccount", fullname),
        ("service", f"{fullname}-metrics"),
        ("servicemonitor", fullname),
        ("clusterrole", fullname),
    ]:
        gone = kubectl.run("get", kind, name, "-n", namespace, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, (kind, gone.stdout)
    gone = kubectl.run("get", "role", fullname, "-n", watched[0], check=False)
    assert "NotFound" in gone.stderr
    kubectl.run("get", "crd", "societies.society.dev")
    kubectl.run("get", "soc", "kept", "-n", watched[0])


def test_the_documented_crd_upgrade_applies_after_a_helm_install(kubectl, chart_release, tmp_path):
    """docs/operations.md: apply the new CRD with the documented `kubectl apply` command, then
    `helm upgrade`. helm 4 installed the CRD by server-side apply as field manager helm, so a
    plain `--server-side` apply of a newer CRD (here: one description changed inside
    .spec.versions) conflicts; the documented command takes the fields over."""
    newer = yaml.safe_load(CRD.read_text())
    schema = newer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["agents"]["description"] += " (a newer release)"
    path = tmp_path / "society.yaml"
    path.write_text(yaml.safe_dump(newer))
    documented = next(
        line.split()
        for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
        if line.startswith("kubectl apply") and "crds/society.yaml" in line
    )
    try:
        done = kubectl.run(*documented[1:-1], str(path), check=False)
        assert done.returncode == 0, done.stderr
    finally:  # the session's other tests expect the CRD of this checkout
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
