"""The pod spec every child shares: the artifact volume, scheduling, security, the environment,
and how a step reports its result (the termination message).

Pods get nothing they do not use: no Service links (a Service named `vllm` in the namespace would
inject VLLM_PORT=tcp://..., which vLLM refuses), no ServiceAccount token (no step talks to the
apiserver), a read-only root filesystem with an emptyDir at /tmp (HOME, and the caches of
vLLM, Triton and torch under it), and the Hugging Face token only where weights are downloaded.
"""

from __future__ import annotations

from typing import Any

from ..api import Society
from ..api.kube import GPU_RESOURCE
from ..api.spec import ComputeSpec
from ..settings import Settings
from .names import claim_name

TERMINATION_LOG = "/dev/termination-log"
NON_ROOT_UID = 1000


def resources(compute: ComputeSpec) -> dict[str, Any]:
    # Quantities are strings on the wire (the kubernetes client's models refuse integers).
    requests = {
        k: str(v) for k, v in (compute.resources.requests if compute.resources else {}).items()
    }
    limits = {k: str(v) for k, v in (compute.resources.limits if compute.resources else {}).items()}
    if compute.gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(compute.gpus)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def downloads_base_model(society: Society) -> bool:
    """Whether the base model comes from the Hugging Face Hub (else: a path on the volume)."""
    return not society.spec.model.name.startswith("/")


def env(society: Society, settings: Settings, hub_token: bool) -> list[dict[str, Any]]:
    """`hub_token`: the pod downloads weights from the Hub, so it gets spec.model's token."""
    out = [
        {"name": "HOME", "value": "/tmp"},  # a non-root user's writable home (an emptyDir)
        {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"},
    ]
    secret = society.spec.model.hfTokenSecretRef
    if secret is not None and hub_token:
        out.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    out.append({"name": "HF_HOME", "value": f"{settings.artifacts_mount}/.cache/huggingface"})
    return out


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": True,
    }


def pod_spec(
    society: Society,
    compute: ComputeSpec,
    container: dict[str, Any],
    settings: Settings,
    restart_policy: str,
) -> dict[str, Any]:
    container["volumeMounts"] = [
        {"name": "artifacts", "mountPath": settings.artifacts_mount},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container["securityContext"] = _container_security()
    container["terminationMessagePath"] = TERMINATION_LOG
    # The step writes its summary or error there; if it died before writing, the log's tail.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
        },
        "containers": [container],
        "volumes": [
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": claim_name(society)}},
            # NCCL and PyTorch data loaders need more shared memory than the 64 MiB default.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if compute.nodeSelector:
        spec["nodeSelector"] = dict(compute.nodeSelector)
    if compute.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in compute.tolerations]
    if compute.priorityClassName:
        spec["priorityClassName"] = compute.priorityClassName
    return spec
