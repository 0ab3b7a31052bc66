"""The pod spec every child shares: the artifact volume, scheduling, security, the environment,
and how a step reports its result (the termination message).

Pods get nothing they do not use: no Service links (a Service named `vllm` in the namespace would
inject VLLM_PORT=tcp://..., which vLLM refuses), no ServiceAccount token (no step talks to the
apiserver), a read-only root filesystem with an emptyDir at /tmp (HOME, and the caches of
vLLM, Triton and torch under it), and the Hugging Face token only where weights are downloaded,
as a file (HF_TOKEN_PATH), not an environment variable. They run as a high UID (10001, as the
images' USER), under the runtime's default seccomp profile, without capabilities.

A manifest reviewed by a peer's checks (checkov, tests/chart/test_checkov.py) should show no
finding that is not a decision; the decisions are said on the object itself, as checkov skip
annotations with their reason (review_annotations).
"""

from __future__ import annotations

from typing import Any

from ..api import Society
from ..api.kube import GPU_RESOURCE
from ..api.spec import ComputeSpec
from ..settings import Settings
from .names import claim_name

TERMINATION_LOG = "/dev/termination-log"
NON_ROOT_UID = 10001
# The Hugging Face token's Secret key, mounted as a file where huggingface_hub reads it.
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_VOLUME = "hf-token"


def resources(compute: ComputeSpec) -> dict[str, Any]:
    # Quantities are strings on the wire (the kubernetes client's models refuse integers).
    requests = {
        k: str(v) for k, v in (compute.resources.requests if compute.resources else {}).items()
    }
    limits = {k: str(v) for k, v in (compute.resources.limits if compute.resources else {}).items()}
    # Past its request a pod may be evicted under memory pressure anyway; a limit as large makes
    # that an OOM kill of this pod, not of its neighbours.
    if "memory" in requests and "memory" not in limits:
        limits["memory"] = requests["memory"]
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
    if society.spec.model.hfTokenSecretRef is not None and hub_token:
        # A file, not $HF_TOKEN: pod_spec mounts the Secret's key there (token_volume).
        out.append({"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/token"})
    out.append({"name": "HF_HOME", "value": f"{settings.artifacts_mount}/.cache/huggingface"})
    return out


def token_volume(society: Society) -> dict[str, Any]:
    """spec.model.hfTokenSecretRef's key as the file `token`, readable by the pod's group."""
    secret = society.spec.model.hfTokenSecretRef
    assert secret is not None
    return {
        "name": HF_TOKEN_VOLUME,
        "secret": {
            "secretName": secret.name,
            "items": [{"key": secret.key, "path": "token"}],
            "defaultMode": 0o440,
        },
    }


def review_annotations(pod: dict[str, Any]) -> dict[str, str]:
    """The checkov findings on a pod template that are decisions, each skipped with its reason
    (checkov.io/skipN: CHECK=reason; a reason may not hold '=')."""
    skips = []
    images = [c["image"] for c in pod["containers"]]
    if any("@sha256:" not in image for image in images):
        skips.append(
            "CKV_K8S_43=pinned by tag: the operator takes the images it is configured with "
            "(the chart's operator.vllmImage and operator.trainerImage or spec.*.image); "
            "give them as repository@sha256 digests to pin them"
        )
    secret_env = sorted(
        e["name"]
        for c in pod["containers"]
        for e in c.get("env", ())
        if "secretKeyRef" in e.get("valueFrom", {})
    )
    if secret_env:
        skips.append(
            f"CKV_K8S_35={', '.join(secret_env)} by secretKeyRef: vllm serve reads its API key "
            "only from this variable or a flag (visible in the pod spec); the debate's client "
            "reads the same one"
        )
    return {f"checkov.io/skip{n}": skip for n, skip in enumerate(skips, start=1)}


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
    # The token's volume goes with the variable env() set to point at it.
    with_token = any(e["name"] == "HF_TOKEN_PATH" for e in container.get("env", ()))
    if with_token:
        container["volumeMounts"].append(
            {"name": HF_TOKEN_VOLUME, "mountPath": HF_TOKEN_DIR, "readOnly": True}
        )
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
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": claim_name(society)}},
            # NCCL and PyTorch data loaders need more shared memory than the 64 MiB default.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if with_token:
        spec["volumes"].append(token_volume(society))
    if compute.nodeSelector:
        spec["nodeSelector"] = dict(compute.nodeSelector)
    if compute.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in compute.tolerations]
    if compute.priorityClassName:
        spec["priorityClassName"] = compute.priorityClassName
    return spec
