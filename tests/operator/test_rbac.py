"""The chart's RBAC grants exactly what the operator uses: every API call the operator makes in a
whole run (recorded by the emulator, per client) is allowed, and every rule is used or justified."""

from __future__ import annotations

from society_operator.kube.client import USER_AGENT

from ..chart.conftest import helm  # noqa: F401  (a fixture)
from ..chart.test_chart import render
from .test_leader import FAST
from .test_operator import NS, Society, summary

# Granted but not called in the recorded run, each for a reason a call log cannot show.
JUSTIFIED = {
    # The admission plugin OwnerReferencesPermissionEnforcement requires it of whoever sets
    # blockOwnerDeletion on a child's ownerReference to a Society.
    ("update", "society.dev", "societies/finalizers"),
    # The reconciler reads a Society from kopf's cache; with a GET only after a conflict on its
    # status write that the watch does not explain (kube/controller.py), which this run lacks.
    ("get", "society.dev", "societies"),
    # Kueue's Workloads, deactivated while a queued Society is suspended: tested with the real
    # Kueue (tests/cluster/test_kueue.py); the emulator has no Kueue.
    ("list", "kueue.x-k8s.io", "workloads"),
    ("patch", "kueue.x-k8s.io", "workloads"),
    # kopf resolves `--namespace` patterns by watching namespaces (the emulator is cluster-wide).
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
}


def operator_calls(emulator) -> set[tuple[str, str, str]]:
    clients = (USER_AGENT, "kopf/")
    return {
        (verb, group, resource)
        for (agent, verb, group, resource) in emulator.calls
        if agent.startswith(clients)
    }


def granted(objects: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (verb, group, resource)
        for obj in objects
        if obj["kind"] in ("ClusterRole", "Role")
        for rule in obj["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_chart_grants_every_call_of_a_whole_run_and_nothing_unused(
    kube,
    apiserver,
    start_operator,
    helm,  # noqa: F811
):
    start_operator(leader_election=True, lease_namespace=NS, lease_timings=FAST)
    society = Society(kube, "phi3").create(finetune={"iterations": 1})
    society.wait_phase("Serving")
    society.servers_ready()
    society.wait_phase("Debating")
    kube.patch("Society", NS, "phi3", {"spec": {"suspend": True}})
    society.wait_phase("Suspended")
    kube.patch("Society", NS, "phi3", {"spec": {"suspend": False}})
    society.wait_phase("Debating")
    kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.5))
    society.wait_phase("Training")
    society.train_and_serve(1)
    kube.finish_job(NS, "phi3-debate-it1", termination_message=summary(0.5))
    society.wait_phase("Succeeded")
    kube.delete("Society", NS, "phi3")
    society.wait_names("Job", [])

    calls = operator_calls(apiserver.emulator)
    rules = granted(render(helm)) | granted(render(helm, "--set", "watchNamespaces={research}"))
    assert calls - rules == set(), "calls the chart does not allow"
    assert rules - calls - JUSTIFIED == set(), "rules nothing uses"
