"""The chart's RBAC grants exactly what the operator uses, read from the real apiserver: a whole
run (leader election, suspend and resume, two iterations, deletion) by `society operator` with
the chart ServiceAccount's token is never refused (the real authorizer decides), and every rule
of the installed chart, and of its watchNamespaces mode, is used by a call in the audit log or
is justified below."""

from __future__ import annotations

from typing import Any

import kubernetes
import yaml

from .conftest import CHART, OPERATOR_NAMESPACE, OPERATOR_USER, RELEASE, Operator
from .controlplane import wait_for
from .test_faults import phase, tiny
from .test_operator import Children, run_to_end

# Granted but not called in the run, each for a reason an audit log cannot show.
JUSTIFIED = {
    # The admission plugin OwnerReferencesPermissionEnforcement requires it of whoever sets
    # blockOwnerDeletion on a child's ownerReference to a Society.
    ("update", "society.dev", "societies/finalizers"),
    # The reconciler reads a Society from kopf's cache; with a GET only after a conflict on its
    # status write that the watch does not explain (kube/controller.py), which this run lacks
    # (test_injected_faults.py injects such conflicts).
    ("get", "society.dev", "societies"),
    # Kueue's Workloads, deactivated while a queued Society is suspended: used in
    # test_kueue.py, with the real Kueue (this run has no queueName).
    ("list", "kueue.x-k8s.io", "workloads"),
    ("patch", "kueue.x-k8s.io", "workloads"),
    # kopf resolves `--namespace` patterns by watching namespaces (this run is cluster-wide).
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
}


def granted(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (verb, group, resource)
        for obj in objects
        if obj and obj["kind"] in ("ClusterRole", "Role")
        for rule in obj.get("rules") or []
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def calls(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    found = set()
    for event in events:
        ref = event.get("objectRef") or {}
        if event.get("user", {}).get("username") != OPERATOR_USER or "resource" not in ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        found.add((event["verb"], ref.get("apiGroup", ""), resource))
    return found


def _suspend(kubectl, namespace: str, suspend: bool) -> None:
    kubectl.run(
        *("patch", "society", "tiny", "-n", namespace, "--type", "merge"),
        *("-p", f'{{"spec":{{"suspend":{str(suspend).lower()}}}}}'),
    )


def test_the_chart_grants_every_call_of_a_whole_run_and_nothing_unused(
    api, kubectl, control_plane, namespace, kubelet, operator_kubeconfig, tmp_path
):
    coordination = kubernetes.client.CoordinationV1Api(api)
    try:  # a Lease left by an earlier test's operator would hold this one back
        coordination.delete_namespaced_lease(RELEASE, OPERATOR_NAMESPACE)
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise
    since = len(control_plane.audit_events())
    operator = Operator(operator_kubeconfig, tmp_path / "operator.log", "--leader-elect").start()
    try:
        kubelet.hold("tiny-debate-it0")
        kubectl.apply(tiny(namespace))
        children = Children(api, namespace, "tiny")

        def reached(wanted: str) -> bool:
            children.poll()
            return phase(api, namespace, "tiny") == wanted

        wait_for(lambda: reached("Debating"), "Debating", timeout=90, every=0.5)
        _suspend(kubectl, namespace, True)
        wait_for(lambda: reached("Suspended"), "Suspended", timeout=30, every=0.5)
        _suspend(kubectl, namespace, False)
        wait_for(lambda: reached("Debating"), "Debating again", timeout=30, every=0.5)
        kubelet.release("tiny-debate-it0")
        status = run_to_end(api, namespace, "tiny", children)
        assert status["phase"] == "Succeeded", status
        kubectl.run("delete", "soc", "tiny", "-n", namespace, "--timeout=60s")
        wait_for(lambda: not children.remaining(), "the children collected", timeout=60)
    finally:
        operator.stop()
        print(operator.output()[-5000:])

    events = [
        e
        for e in control_plane.audit_events()[since:]
        if e.get("user", {}).get("username") == OPERATOR_USER
        and e.get("stage") == "ResponseComplete"
    ]
    refused = [
        (e["verb"], e.get("objectRef"))
        for e in events
        if e.get("responseStatus", {}).get("code") in (401, 403)
    ]
    assert not refused, f"calls the chart does not allow: {refused}"
    installed = [
        kubectl.json("get", "clusterroles", "-l", f"app.kubernetes.io/instance={RELEASE}"),
        kubectl.json("get", "roles", "-A", "-l", f"app.kubernetes.io/instance={RELEASE}"),
    ]
    rules = granted([obj for listed in installed for obj in listed["items"]])
    assert rules, "no Role or ClusterRole of the chart found"
    namespaced = kubectl.helm(
        *("template", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE),
        *("--set", f"watchNamespaces={{{namespace}}}"),
    ).stdout
    rules |= granted(list(yaml.safe_load_all(namespaced)))
    assert rules - calls(events) - JUSTIFIED == set(), "rules nothing uses"
