"""The vLLM API protected (issue 16 item 8): every Society's servers take an API key from a
Secret the operator makes for it, its debate Job sends that key, both by reference only, and an
optional NetworkPolicy admits only the Society's debate pods. The operator watches only labelled
children (item 7): the kopf settings it runs with."""

from __future__ import annotations

import json

import kopf
import pytest
from kopf._cogs.structs.references import Resource

from society_operator.api import Society
from society_operator.build.access import (
    API_KEY_ENV,
    api_key_secret_name,
    build_access,
    build_api_key_secret,
    build_network_policy,
    build_steps_network_policy,
)
from society_operator.build.desired import desired
from society_operator.build.server import VLLM_PORT
from society_operator.core.observed import Observed, ObservedJob, ObservedServer
from society_operator.core.reconciler import reconcile
from society_operator.kube.config import OperatorConfig, configure
from society_operator.kube.handlers import CHILD_RESOURCES
from society_operator.settings import Settings

from .test_reconciler import T0

SETTINGS = Settings()


@pytest.fixture
def society(minimal_society) -> Society:
    minimal_society["metadata"].update(namespace="research", uid="u-1", generation=1)
    return Society.model_validate(minimal_society)


def env_of(body: dict) -> dict[str, dict]:
    (container,) = body["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_the_secret_is_the_societys_own_and_holds_a_random_key(society):
    first, second = build_api_key_secret(society).body, build_api_key_secret(society).body
    assert first["metadata"]["name"] == second["metadata"]["name"] == "minimal-vllm-api-key"
    (owner,) = first["metadata"]["ownerReferences"]  # collected with the Society
    assert owner["uid"] == "u-1" and owner["kind"] == "Society" and owner["controller"]
    assert first["metadata"]["labels"]["society.dev/society"] == "minimal"
    assert first["immutable"] is True and first["type"] == "Opaque"
    key = first["stringData"]["api-key"]
    assert len(key) >= 40 and key != second["stringData"]["api-key"]  # 32 random bytes


def test_servers_and_the_debate_read_the_key_by_reference_and_nothing_else_has_it(society):
    want = desired(society, SETTINGS, 1)
    secret = next(c for c in want.access if c.kind == "Secret")
    ref = {"secretKeyRef": {"name": api_key_secret_name(society), "key": "api-key"}}
    [(deployment, service)] = want.servers.values()
    assert env_of(deployment.body)[API_KEY_ENV] == {"name": API_KEY_ENV, "valueFrom": ref}
    assert env_of(want.debate.body)[API_KEY_ENV] == {"name": API_KEY_ENV, "valueFrom": ref}
    # Training talks to no server: no key.
    assert all(API_KEY_ENV not in env_of(job.body) for job in want.training)
    # vLLM reads $VLLM_API_KEY; a key on its command line would be in the pod spec.
    (container,) = deployment.body["spec"]["template"]["spec"]["containers"]
    assert "--api-key" not in container["args"]
    # The value itself is nowhere but in the Secret: not in a manifest, nor a step config.
    key = secret.body["stringData"]["api-key"]
    others = [deployment, service, want.debate, *want.training]
    assert all(key not in json.dumps(child.body) for child in others)
    assert want.debate.config.backend.api_key == "EMPTY"
    # The probes and the Service keep working: /health is not behind the key.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_the_network_policy_admits_only_the_societys_debate_pods_on_the_api_port(society):
    want = desired(society, SETTINGS, 0)
    policy = build_network_policy(society).body
    [(deployment, _)] = want.servers.values()
    server_labels = deployment.body["spec"]["template"]["metadata"]["labels"]
    debate_labels = want.debate.body["spec"]["template"]["metadata"]["labels"]
    training_labels = want.training[0].body["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict, labels: dict) -> bool:
        return selector["matchLabels"].items() <= labels.items()

    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert selects(spec["podSelector"], server_labels)
    assert not selects(spec["podSelector"], debate_labels)
    [rule] = spec["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # this namespace only
    assert selects(source["podSelector"], debate_labels)
    assert not selects(source["podSelector"], training_labels)
    assert not selects(source["podSelector"], server_labels)
    # Another Society's debate pods in the same namespace are not admitted.
    other = dict(debate_labels, **{"society.dev/society": "other"})
    assert not selects(source["podSelector"], other)
    assert rule["ports"] == [{"protocol": "TCP", "port": VLLM_PORT}]
    (owner,) = policy["metadata"]["ownerReferences"]
    assert owner["uid"] == "u-1"


def _matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector's meaning, for the operators the builders use (matchLabels, In)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_debate_and_training_pods_admit_no_connection(society):
    want = desired(society, SETTINGS, 1)
    [(deployment, _)] = want.servers.values()
    pod_labels = {
        name: child.body["spec"]["template"]["metadata"]["labels"]
        for name, child in [("server", deployment), ("debate", want.debate)]
        + [(f"training-{i}", c) for i, c in enumerate(want.training)]
    }
    spec = build_steps_network_policy(society).body["spec"]
    assert spec["policyTypes"] == ["Ingress"] and "ingress" not in spec  # nothing admitted
    selector = spec["podSelector"]
    selected = {name for name, labels in pod_labels.items() if _matches(selector, labels)}
    assert selected == set(pod_labels) - {"server"}
    other = dict(pod_labels["debate"], **{"society.dev/society": "other"})
    assert not _matches(selector, other)


def test_the_network_policy_is_the_operators_choice(society, monkeypatch):
    kinds = [c.kind for c in build_access(society, SETTINGS)]
    assert kinds == ["Secret", "NetworkPolicy", "NetworkPolicy"]
    off = Settings(network_policy=False)
    assert [c.kind for c in build_access(society, off)] == ["Secret"]
    assert Settings.from_env({}).network_policy is True
    assert Settings.from_env({"SOCIETY_NETWORK_POLICY": "false"}).network_policy is False
    assert Settings.from_env({"SOCIETY_NETWORK_POLICY": "true"}).network_policy is True


def test_the_reconciler_makes_the_key_before_the_servers_and_the_debate_job(society):
    plan = reconcile(society, Observed(claim=True), SETTINGS, T0)
    kinds = [c.kind for c in plan.create]
    assert kinds == ["Secret", "NetworkPolicy", "NetworkPolicy", "Deployment", "Service"]

    # Servers up and ready: the debate Job alone (the Secret was made with the servers; a
    # create of what exists costs a request, so it is asked for only with new servers).
    ready = ObservedServer("minimal-vllm", 0, 1, True, T0, service=True)
    plan = reconcile(society, Observed(claim=True, servers={ready.name: ready}), SETTINGS, T0)
    assert [c.kind for c in plan.create] == ["Job"]

    # While the debate runs, nothing is created (no request per reconcile).
    job = ObservedJob("minimal-debate-it0", "running", created=T0)
    observed = Observed(claim=True, servers={ready.name: ready}, jobs={job.name: job})
    society = society.model_copy(update={"status": plan.status})
    assert reconcile(society, observed, SETTINGS, T0).create == []


def test_children_are_watched_through_a_label_selector_and_societies_unfiltered():
    settings = kopf.OperatorSettings()
    configure(settings, CHILD_RESOURCES)
    for group, version, plural in CHILD_RESOURCES:
        resource = Resource(group, version, plural)
        assert settings.watching.label_selectors.collect(resource) == ["society.dev/society"]
    society = Resource("society.dev", "v1alpha1", "societies")
    assert settings.watching.label_selectors.collect(society) == []
    # Unrelated kinds (kopf's own Events, Leases) are not ours to filter either.
    assert settings.watching.label_selectors.collect(Resource("", "v1", "events")) == []


def test_the_selectors_can_be_switched_off_only_to_measure_them():
    assert OperatorConfig.from_env({}).watch_selectors is True
    assert OperatorConfig.from_env({"SOCIETY_WATCH_SELECTORS": "false"}).watch_selectors is False
