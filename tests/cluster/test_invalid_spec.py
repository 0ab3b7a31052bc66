"""A Society whose spec the operator's models reject, on a real apiserver.

The project's CRD refuses such a spec, but Helm never upgrades a chart's CRDs (docs/install.md),
so a cluster can run a newer operator against an older, looser CRD that stores it. The test puts
such a CRD in place of the project's for its duration (same group, version, names and status
subresource; a spec of any shape), and puts the project's back afterwards, checked enforced, so
that the tests after it see the real one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from .conftest import CRD, OPERATOR_USER, Kubectl
from .controlplane import ControlPlane, wait_for
from .test_operator import SOCIETY_LABEL, event_reasons, get_society

CRD_NAME = "societies.society.dev"
ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def society(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    task = {"name": "arithmetic", "trainSize": 8, "evalSize": 8}
    return {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": "org/model"}, "task": task, "finetune": {"iterations": 2}}
        | spec,
    }


def looser_crd() -> dict[str, Any]:
    """The project's CRD with a schema that takes any spec (and any status): a CRD older than
    the operator's models."""
    loose = copy.deepcopy(yaml.safe_load(CRD.read_text()))
    for version in loose["spec"]["versions"]:
        version["schema"] = {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": ANY_OBJECT, "status": ANY_OBJECT},
            }
        }
    return loose


def dry_run_agents_zero(kubectl: Kubectl, namespace: str):
    """A server-side dry run of a new Society with agents: 0 (nothing is stored)."""
    probe = society(namespace, "crd-probe", agents=0)
    return kubectl.apply(probe, "--dry-run=server", check=False)


def install_crd(kubectl: Kubectl, manifest: str) -> None:
    """As the `crd` fixture installs the project's CRD (the same field manager, so that fields
    one version has and the other lacks are removed), and Established."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
    wait_for(
        lambda: (
            kubectl.run(
                "wait", "--for=condition=Established", f"crd/{CRD_NAME}", check=False
            ).returncode
            == 0
        ),
        "the Society CRD Established",
        every=0.5,
    )


@pytest.fixture
def older_crd(kubectl: Kubectl, crd, namespace: str) -> Iterator[None]:
    """The looser CRD in place for the test; the project's back afterwards, always."""
    original = kubectl.json("get", "crd", CRD_NAME)["spec"]
    try:
        install_crd(kubectl, yaml.safe_dump(looser_crd()))
        # The apiserver takes the new schema a moment after the update.
        wait_for(
            lambda: dry_run_agents_zero(kubectl, namespace).returncode == 0,
            "the looser CRD taking agents: 0",
            every=0.5,
        )
        yield
    finally:
        # Nothing stored against the looser schema stays for a later operator to meet.
        kubectl.run("delete", "societies", "--all", "-n", namespace, "--timeout=60s", check=False)
        install_crd(kubectl, CRD.read_text())

        def strict() -> bool:
            refused = dry_run_agents_zero(kubectl, namespace)
            return refused.returncode != 0 and "spec.agents" in refused.stderr

        wait_for(strict, "the project's CRD refusing agents: 0 again", every=0.5)
        # kubectl explain reads the published OpenAPI, which follows a moment later.
        wait_for(
            lambda: kubectl.run("explain", "societies.spec.agents", check=False).returncode == 0,
            "the project's Society OpenAPI schema published again",
            every=0.5,
        )
        restored = kubectl.json("get", "crd", CRD_NAME)["spec"]
        assert restored == original, "the project's CRD did not come back as it was"


def test_a_society_the_models_reject_fails_naming_the_field(
    api, kubectl, control_plane: ControlPlane, namespace, older_crd, operator
):
    """agents: 0, stored by the older CRD: the operator fails the Society naming the field
    (condition Failed, reason InvalidSpec, and a Warning Event saying the same) and makes
    nothing for it."""
    kubectl.apply(society(namespace, "phi3", agents=0))  # the older CRD takes it

    def failed() -> dict[str, Any] | None:
        status = get_society(api, namespace, "phi3").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, "phi3 Failed", timeout=90, every=0.5)
    condition = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert condition["status"] == "True" and condition["reason"] == "InvalidSpec", condition
    assert condition["message"].startswith("invalid spec: spec.agents: "), condition
    wait_for(
        lambda: event_reasons(api, namespace, "phi3") == ["InvalidSpec"],
        "one Event InvalidSpec",
        timeout=20,
    )
    core = kubernetes.client.CoreV1Api(api)
    (event,) = core.list_namespaced_event(namespace, field_selector="reason=InvalidSpec").items
    assert event.type == "Warning" and event.message == condition["message"], event

    # The operator resyncs every 5 s: past one, it still made nothing but Events.
    time.sleep(6)
    made = {
        (e.get("objectRef") or {}).get("resource")
        for e in control_plane.audit_events()
        if e.get("stage") == "ResponseComplete"
        and e.get("verb") == "create"
        and e.get("user", {}).get("username") == OPERATOR_USER
        and (e.get("objectRef") or {}).get("namespace") == namespace
    }
    assert made == {"events"}, made
    selector = f"{SOCIETY_LABEL}=phi3"
    assert not core.list_namespaced_persistent_volume_claim(namespace).items
    assert not kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace).items
    apps = kubernetes.client.AppsV1Api(api)
    assert not apps.list_namespaced_deployment(namespace).items
    assert not core.list_namespaced_service(namespace, label_selector=selector).items
    assert not core.list_namespaced_secret(namespace, label_selector=selector).items
