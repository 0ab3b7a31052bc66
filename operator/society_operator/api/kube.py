"""Kubernetes-shaped pieces of the Society API, restricted to what the operator passes through.

They mirror core/v1 and meta/v1 field names so that users can paste from their existing
manifests, but they are our own models: the Society schema must be self-contained (a CRD cannot
reference core/v1 types), and unknown fields must be errors here too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from .base import ApiModel, Rule

# The apiserver's quantity grammar (resource.Quantity), as kubebuilder renders it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY_RE.fullmatch(value):  # `$` allows a final \n
        raise PydanticCustomError(
            "quantity", "must be a Kubernetes quantity such as 8, 500m, 64Gi or 1.5e3"
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}]}
    ),
]

# RFC 1123 label (names of Secrets, claims, Kueue queues ...).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]
# RFC 1123 subdomain (Secret names, PriorityClass names, StorageClass names).
DnsSubdomain = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    ),
]

GPU_RESOURCE = "nvidia.com/gpu"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Society's namespace. Its value reaches pods only through a
    secretKeyRef environment variable, never through the Society or a ConfigMap."""

    name: DnsSubdomain
    """Name of the Secret."""
    key: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]*[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
        ),
    ] = "token"
    """Key within the Secret: letters, digits, '-', '_' and '.', not . or .. (the apiserver's
    rule for a Secret's keys; pods mount it as a file)."""


class Toleration(ApiModel):
    """A core/v1 Toleration, e.g. for the taint GPU node pools carry."""

    key: Annotated[str, StringConstraints(max_length=316)] | None = None
    """Taint key the toleration applies to; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists matches any value; Equal requires `value` to match."""
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    """Taint value to match when operator is Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    tolerationSeconds: int | None = Field(None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""

    rules = (
        Rule(
            cel="self.operator != 'Exists' || !has(self.value)",
            message="value must be empty when operator is Exists",
            check=lambda t: t.operator != "Exists" or t.value is None,
            field="value",
        ),
    )


class ResourceRequirements(ApiModel):
    """CPU, memory and other resources for each pod, as in core/v1. GPUs are not set here: the
    `gpus` field beside this one is the single place that says how many a pod gets."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Minimum resources the scheduler reserves, e.g. {cpu: 8, memory: 64Gi}."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources the pod may use, e.g. {memory: 80Gi}."""

    rules = (
        Rule(
            cel=f"!(has(self.requests) && '{GPU_RESOURCE}' in self.requests)"
            f" && !(has(self.limits) && '{GPU_RESOURCE}' in self.limits)",
            message=f"{GPU_RESOURCE} cannot be set in resources: use the gpus field instead",
            check=lambda r: GPU_RESOURCE not in r.requests and GPU_RESOURCE not in r.limits,
        ),
    )


ConditionType = Literal["Ready", "Progressing", "Failed", "Suspended", "Degraded"]


class Condition(ApiModel):
    """A meta/v1 Condition: the standard way for tools (kubectl wait, Argo, Flux) to read state."""

    model_config = ConfigDict(extra="ignore")

    type: ConditionType
    """Ready: finished successfully; Progressing: work is under way; Failed: stopped on an error
    that needs a person; Suspended: spec.suspend holds the run; Degraded: the run goes on but
    something is missing from its results (reason ResultsMissing), and it stays said."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    observedGeneration: int | None = Field(None, ge=0)
    """The metadata.generation this condition was computed from."""
    lastTransitionTime: datetime
    """When status last changed."""
    reason: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    ]
    """A CamelCase machine-readable reason, e.g. JobFailed."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """A human-readable explanation."""
