"""Names, labels and ownership of a Society's children.

Every child has a deterministic name (so an operator restarted at any instant finds what exists
and creates nothing twice), an ownerReference to its Society (so deleting the Society collects
it), and the standard app.kubernetes.io labels plus society.dev/{society,iteration,role,agent}.
"""

from __future__ import annotations

from typing import Any

from ..api import API_VERSION, KIND, Society

LABEL_SOCIETY = "society.dev/society"
LABEL_ITERATION = "society.dev/iteration"
LABEL_ROLE = "society.dev/role"
LABEL_AGENT = "society.dev/agent"
LABEL_SERVER = "society.dev/server"  # on a server's pods: which Deployment they belong to
LABEL_COMPONENT = "app.kubernetes.io/component"  # inference, debate, training or artifacts
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def claim_name(society: Society) -> str:
    return society.spec.storage.claimName or f"{society.metadata.name}-artifacts"


def server_name(society: Society, served: str | None = None) -> str:
    """LoRA mode: one server per Society. Full mode: one per model (`served`)."""
    base = f"{society.metadata.name}-vllm"
    return base if served is None else f"{base}-{served}"


def debate_job_name(society: Society, iteration: int, training_only: bool = False) -> str:
    name = f"{society.metadata.name}-debate-it{iteration}"
    return f"{name}-train" if training_only else name


def training_job_name(society: Society, model: str) -> str:
    """The Job that trains `model` (e.g. gen-0-it2, see steps.model_name)."""
    return f"{society.metadata.name}-train-{model}"


def labels(society: Society, component: str, **extra: str | int) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "society",
        "app.kubernetes.io/instance": society.metadata.name,
        LABEL_COMPONENT: component,
        "app.kubernetes.io/part-of": "society-operator",
        "app.kubernetes.io/managed-by": "society-operator",
        LABEL_SOCIETY: society.metadata.name,
    }
    keys = {"iteration": LABEL_ITERATION, "role": LABEL_ROLE, "agent": LABEL_AGENT}
    out.update({keys[k]: str(v) for k, v in extra.items()})
    return out


def owner_reference(society: Society) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": society.metadata.name,
        "uid": society.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(society: Society, name: str, component: str, **extra: str | int) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": society.metadata.namespace,
        "labels": labels(society, component, **extra),
        "ownerReferences": [owner_reference(society)],
    }
