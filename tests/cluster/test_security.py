"""Issue 16 items 7 and 8 on the real control plane, with the operator as the chart runs it (its
own process, the chart's ServiceAccount token, so the chart's RBAC decides what it may do):

- each Society gets the API key Secret of its vLLM servers and a NetworkPolicy admitting only its
  debate pods (and one admitting nothing to its debate and training pods); the server Deployment
  and the debate Job read the key by reference; the key is in no status, Event or log line; the
  garbage collector removes them with the Society;
- the operator lists and watches the children kinds only through a `society.dev/society` label
  selector (from the apiserver's audit log of its requests), the Societies unfiltered.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import kubernetes
import yaml

from ..conftest import ROOT
from .controlplane import wait_for
from .test_operator import Children, run_to_end

TINY = ROOT / "examples" / "tiny.yaml"
KEY_REF = {"name": "tiny-vllm-api-key", "key": "api-key"}


def secret_ref(env: list) -> dict | None:
    for var in env or []:
        if var.name == "VLLM_API_KEY":
            return var.value_from.secret_key_ref.to_dict() if var.value_from else {"value": 1}
    return None


def test_a_society_gets_its_api_key_and_policy_and_they_go_with_it(
    api, kubectl, namespace, kubelet, operator
):
    core = kubernetes.client.CoreV1Api(api)
    networking = kubernetes.client.NetworkingV1Api(api)
    apps = kubernetes.client.AppsV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["finetune"]["iterations"] = 1
    kubelet.hold("tiny-debate-it0")  # servers and debate both up while we look
    kubectl.apply(manifest)

    job = wait_for(
        lambda: (
            batch.list_namespaced_job(
                namespace, label_selector="app.kubernetes.io/component=debate"
            ).items
        ),
        "the debate Job",
        timeout=60,
    )[0]
    deployment = apps.read_namespaced_deployment("tiny-vllm", namespace)
    secret = core.read_namespaced_secret("tiny-vllm-api-key", namespace)
    policy = networking.read_namespaced_network_policy("tiny-vllm", namespace)
    steps = networking.read_namespaced_network_policy("tiny-steps", namespace)
    uid = kubectl.json("get", "society", "tiny", "-n", namespace)["metadata"]["uid"]

    # The server and the debate read the one key, by reference.
    (server,) = deployment.spec.template.spec.containers
    (client,) = job.spec.template.spec.containers
    assert secret_ref(server.env) == secret_ref(client.env) == KEY_REF | {"optional": None}
    key = base64.b64decode(secret.data["api-key"]).decode()
    assert len(key) >= 40 and secret.immutable
    for owned in (secret, policy, steps):
        (owner,) = owned.metadata.owner_references
        assert (owner.kind, owner.uid, owner.controller) == ("Society", uid, True)
    # The policy selects the server's pods and admits the debate's.
    server_labels = deployment.spec.template.metadata.labels
    debate_labels = job.spec.template.metadata.labels
    assert policy.spec.pod_selector.match_labels.items() <= server_labels.items()
    (rule,) = policy.spec.ingress
    (source,) = rule._from
    assert source.pod_selector.match_labels.items() <= debate_labels.items()
    assert source.namespace_selector is None
    assert [(p.protocol, p.port) for p in rule.ports] == [("TCP", 8000)]
    # The debate and training pods admit nothing: an Ingress policy without rules.
    assert steps.spec.policy_types == ["Ingress"] and not steps.spec.ingress
    assert steps.spec.pod_selector.match_labels.items() <= debate_labels.items()
    (expression,) = steps.spec.pod_selector.match_expressions
    assert debate_labels[expression.key] in expression.values

    kubelet.release("tiny-debate-it0")
    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))
    assert status["phase"] == "Succeeded", status

    # The key is nowhere else: not in the status, an Event, the operator's log, a pod spec.
    events = kubectl.run("get", "events", "-n", namespace, "-o", "yaml").stdout
    society = kubectl.run("get", "society", "tiny", "-n", namespace, "-o", "yaml").stdout
    jobs = kubectl.run("get", "jobs,deployments", "-n", namespace, "-o", "yaml").stdout
    for text in (events, society, jobs, operator.output()):
        assert key not in text
    # Made once: iteration 1's server, created with a second create of it, kept the first key.
    again = core.read_namespaced_secret("tiny-vllm-api-key", namespace)
    assert again.metadata.uid == secret.metadata.uid and again.data == secret.data

    kubectl.run("delete", "society", "tiny", "-n", namespace, "--timeout=60s")

    def collected() -> bool:
        selector = "society.dev/society=tiny"
        return not (
            core.list_namespaced_secret(namespace, label_selector=selector).items
            or networking.list_namespaced_network_policy(namespace, label_selector=selector).items
        )

    wait_for(collected, "the Secret and the NetworkPolicies garbage-collected", timeout=60)
    assert "Forbidden" not in operator.output() and "Traceback" not in operator.output()


def test_children_are_listed_and_watched_by_label_only(
    control_plane, api, kubectl, namespace, kubelet, operator
):
    """kopf's initial lists and its watches of pods, Jobs, Deployments, Services and claims carry
    labelSelector=society.dev/society, so unlabelled objects never reach the operator; the
    Society watch is unfiltered. The operator still sees its own children: a run finishes.
    Every operator this session started counts (the audit log has them all, and its first
    lists may be written before this test's body runs)."""
    manifest = yaml.safe_load(TINY.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["finetune"]["iterations"] = 1
    kubectl.apply(manifest)
    status = run_to_end(api, namespace, "tiny", Children(api, namespace, "tiny"))
    assert status["phase"] == "Succeeded", status
    time.sleep(1)  # the audit log is written asynchronously

    selectors: dict[str, set] = {}
    for event in control_plane.audit_events():
        if event.get("verb") not in ("list", "watch"):
            continue
        resource = (event.get("objectRef") or {}).get("resource")
        query = parse_qs(urlsplit(event["requestURI"]).query)
        selectors.setdefault(resource, set()).add(tuple(query.get("labelSelector", [])))
    children = {"pods", "jobs", "deployments", "services", "persistentvolumeclaims"}
    assert children <= selectors.keys(), selectors  # every kind watched, by this operator
    for resource in children:
        assert selectors[resource] == {("society.dev/society",)}, (resource, selectors)
    assert selectors["societies"] == {()}
