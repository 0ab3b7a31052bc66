"""Who may use a Society's vLLM servers: an API key, and optionally a NetworkPolicy.

vLLM's OpenAI API has no access control of its own beyond one shared key, and any pod in the
cluster can reach a Service. So every Society gets a Secret holding a random key, made by the
operator and owned by the Society (garbage-collected with it); its servers read it from
$VLLM_API_KEY, which `vllm serve` takes as `--api-key` (/health and /metrics stay open, which the
probes need), and its debate Jobs send it (society_trainer.generation.openai reads the same
variable). Both reference the Secret by secretKeyRef: the key is never in a pod spec, the step
config, the status, an Event or a log line.

The key is drawn anew each time the Secret is built, but the Secret is only ever created, never
updated: the first one made stays (a create of an existing one is a no-op), so the key is
generated once per Society and survives operator restarts.

The NetworkPolicies (the operator's `network_policy` setting, the chart's
`networkPolicy.enabled`): one admits to the server pods only the Society's own debate pods, on the
API port; the other admits nothing to the debate and training pods, which serve nothing (each
Job is one pod that only makes outgoing connections: to the servers, to Hugging Face). The kubelet's
probes are not affected (traffic from a pod's node is always allowed). NetworkPolicies add up, so
a cluster that wants more (say, Prometheus scraping vLLM's /metrics) adds its own policy.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..api import Society
from ..settings import Settings
from .child import Child
from .names import LABEL_COMPONENT, LABEL_SOCIETY, metadata

API_KEY_ENV = "VLLM_API_KEY"  # what `vllm serve` reads, and what the debate's client reads
API_KEY_FIELD = "api-key"
VLLM_PORT = 8000


def api_key_secret_name(society: Society) -> str:
    return f"{society.metadata.name}-vllm-api-key"


def api_key_env(society: Society) -> dict[str, Any]:
    """The environment variable that gives a container the Society's key, by reference."""
    ref = {"name": api_key_secret_name(society), "key": API_KEY_FIELD}
    return {"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": ref}}


def build_api_key_secret(society: Society) -> Child:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(society, api_key_secret_name(society), "inference"),
        "type": "Opaque",
        # Never changed once made: an immutable Secret cannot be edited by mistake, and the
        # kubelet need not watch it.
        "immutable": True,
        "stringData": {API_KEY_FIELD: secrets.token_urlsafe(32)},
    }
    return Child.of(body)


def build_network_policy(society: Society) -> Child:
    name = society.metadata.name

    def component(value: str) -> dict[str, Any]:
        return {"matchLabels": {LABEL_SOCIETY: name, LABEL_COMPONENT: value}}

    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(society, f"{name}-vllm", "inference"),
        "spec": {
            "podSelector": component("inference"),
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": component("debate")}],
                    "ports": [{"protocol": "TCP", "port": VLLM_PORT}],
                }
            ],
        },
    }
    return Child.of(body)


def build_steps_network_policy(society: Society) -> Child:
    """No ingress at all to the Society's debate and training pods (egress is left open)."""
    name = society.metadata.name
    selector = {
        "matchLabels": {LABEL_SOCIETY: name},
        "matchExpressions": [
            {"key": LABEL_COMPONENT, "operator": "In", "values": ["debate", "training"]}
        ],
    }
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(society, f"{name}-steps", "debate"),
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"]},
    }
    return Child.of(body)


def build_access(society: Society, settings: Settings) -> list[Child]:
    """What the servers and the debate need: the key's Secret and, when the operator is set to
    make them, the NetworkPolicies. The reconciler asks for them with every new server, before
    it (an iteration's debate Job starts only once its servers are ready)."""
    children = [build_api_key_secret(society)]
    if settings.network_policy:
        children += [build_network_policy(society), build_steps_network_policy(society)]
    return children
