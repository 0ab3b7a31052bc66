"""What the chart does for a reviewer: the operator's pods admit connections only to the metrics
port, its image can be pinned by digest, and what it leaves as it is says why on the object."""

from __future__ import annotations

import pytest

from .test_chart import FULLNAME, one, render, values_file

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def default(helm) -> list[dict]:
    return render(helm)


def test_the_operators_pods_admit_only_the_metrics_port(default):
    policy = one(default, "NetworkPolicy", name=FULLNAME)
    deployment = one(default, "Deployment", name=FULLNAME)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress: the apiserver, wherever it is
    (rule,) = policy["spec"]["ingress"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert rule["ports"] == [{"protocol": "TCP", "port": ports["metrics"]}]
    assert "from" not in rule  # by default any pod may scrape


def test_who_may_scrape_and_whether_there_is_a_policy_are_values(helm, tmp_path_factory):
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    values = {"operatorNetworkPolicy": {"enabled": True, "metricsFrom": [peer]}}
    objects = render(helm, "-f", values_file(tmp_path_factory, values))
    (rule,) = one(objects, "NetworkPolicy", name=FULLNAME)["spec"]["ingress"]
    assert rule["from"] == [peer]
    off = {"operatorNetworkPolicy": {"enabled": False}}
    objects = render(helm, "-f", values_file(tmp_path_factory, off))
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


def test_the_image_is_pinned_by_digest_when_given_one(helm, default, tmp_path_factory):
    deployment = one(default, "Deployment", name=FULLNAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "@" not in container["image"]
    skips = deployment["metadata"]["annotations"]
    assert any(v.startswith("CKV_K8S_43=") for v in skips.values())

    objects = render(helm, "-f", values_file(tmp_path_factory, {"image": {"digest": DIGEST}}))
    deployment = one(objects, "Deployment", name=FULLNAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(
        f":{deployment['metadata']['labels']['app.kubernetes.io/version']}@{DIGEST}"
    )
    assert not any(
        v.startswith("CKV_K8S_43=") for v in deployment["metadata"]["annotations"].values()
    )


def test_a_malformed_digest_is_refused(helm, tmp_path_factory):
    from .test_chart import CHART, run_helm

    bad = values_file(tmp_path_factory, {"image": {"digest": "latest"}})
    done = run_helm(helm, "template", "s", str(CHART), "-f", bad)
    assert done.returncode != 0 and "digest" in done.stderr


def test_every_skip_annotation_has_a_reason_checkov_can_read(default):
    for obj in default:
        for key, value in obj["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, reason = value.split("=")  # checkov splits on '=' and wants two parts
                assert check.startswith("CKV") and len(reason.split()) >= 5, value
