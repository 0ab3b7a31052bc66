"""Pure builders of a Society's children: dicts in, manifests out, no API calls.

Every child has a deterministic name (so an operator restarted at any instant finds what exists
and creates nothing twice), an ownerReference to its Society (so deleting the Society collects
it), the standard app.kubernetes.io labels plus society.dev/{society,iteration,role,agent}, and
the Society's scheduling settings. Step configs reach pods as JSON in $SOCIETY_STEP_CONFIG, and
pods report results through their termination message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from society_trainer.config import STEP_CONFIG_ENV, DebateConfig, FinetuneConfig, OpenAIBackend

from .api import API_VERSION, KIND, Society
from .api.kube import GPU_RESOURCE, ResourceRequirements
from .api.spec import ComputeSpec
from .settings import Settings
from .steps import BASE_MODEL_NAME, Layout, debate_config, finetune_configs, served_models

VLLM_PORT = 8000
TERMINATION_LOG = "/dev/termination-log"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LABEL_SOCIETY = "society.dev/society"
LABEL_ITERATION = "society.dev/iteration"
LABEL_ROLE = "society.dev/role"
LABEL_AGENT = "society.dev/agent"
LABEL_SERVER = "society.dev/server"  # on a server's pods: which Deployment they belong to
NON_ROOT_UID = 1000


# --- names -------------------------------------------------------------------------------------


def claim_name(society: Society) -> str:
    return society.spec.storage.claimName or f"{society.metadata.name}-artifacts"


def server_name(society: Society, served: str | None = None) -> str:
    """LoRA mode: one server per Society. Full mode: one per model (`served`)."""
    base = f"{society.metadata.name}-vllm"
    return base if served is None else f"{base}-{served}"


def debate_job_name(society: Society, iteration: int, training_only: bool = False) -> str:
    name = f"{society.metadata.name}-debate-it{iteration}"
    return f"{name}-train" if training_only else name


def training_job_name(society: Society, config: FinetuneConfig) -> str:
    return f"{society.metadata.name}-train-{config.output_dir.name}"


# --- shared pieces -----------------------------------------------------------------------------


def labels(society: Society, component: str, **extra: str | int) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "society",
        "app.kubernetes.io/instance": society.metadata.name,
        "app.kubernetes.io/component": component,
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


def layout(society: Society, settings: Settings) -> Layout:
    """Each Society's artifacts sit in a directory of their own on the claim."""
    return Layout(Path(settings.artifacts_mount) / society.metadata.name)


def base_model_location(society: Society, settings: Settings) -> str:
    """A Hugging Face id as it is; a path is a path on the artifact volume."""
    name = society.spec.model.name
    return f"{settings.artifacts_mount}{name}" if name.startswith("/") else name


def _resources(compute: ComputeSpec) -> dict[str, Any]:
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


def _env(society: Society) -> list[dict[str, Any]]:
    env = [
        {"name": "HOME", "value": "/tmp"},  # a non-root user's writable home
        {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"},
    ]
    secret = society.spec.model.hfTokenSecretRef
    if secret is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    return env


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_spec(
    society: Society,
    compute: ComputeSpec,
    container: dict[str, Any],
    settings: Settings,
    restart_policy: str,
) -> dict[str, Any]:
    container["volumeMounts"] = [
        {"name": "artifacts", "mountPath": settings.artifacts_mount},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    container["securityContext"] = _container_security()
    container["terminationMessagePath"] = TERMINATION_LOG
    # The step writes its summary or error there; if it died before writing, the log's tail.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
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
        ],
    }
    if compute.nodeSelector:
        spec["nodeSelector"] = dict(compute.nodeSelector)
    if compute.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in compute.tolerations]
    if compute.priorityClassName:
        spec["priorityClassName"] = compute.priorityClassName
    return spec


# --- the artifact claim --------------------------------------------------------------------------


def build_claim(society: Society, settings: Settings) -> dict[str, Any] | None:
    """The claim the operator creates, or None when the Society names an existing one. Only a
    claim the Society may delete (whenDeleted: Delete) is owned by it, so Retain survives."""
    storage = society.spec.storage
    if storage.claimName:
        return None
    meta = metadata(society, claim_name(society), "artifacts")
    if storage.whenDeleted == "Retain":
        del meta["ownerReferences"]
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": str(storage.size or settings.default_claim_size)}},
    }
    if storage.storageClassName:
        spec["storageClassName"] = storage.storageClassName
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


# --- inference ------------------------------------------------------------------------------------


def _vllm_args(society: Society, settings: Settings, iteration: int, served: str) -> list[str]:
    spec = society.spec
    paths = layout(society, settings)
    if served == BASE_MODEL_NAME:
        source = base_model_location(society, settings)
    else:
        source = str(paths.model_dir(served))
    args = [
        "--model",
        source,
        "--served-model-name",
        served,
        "--port",
        str(VLLM_PORT),
        "--dtype",
        spec.model.dtype,
        "--tensor-parallel-size",
        str(spec.inference.tensorParallel),
    ]
    if served == BASE_MODEL_NAME and not spec.model.name.startswith("/"):
        args += ["--revision", spec.model.revision]
    if spec.finetune.method == "lora" and iteration > 0:
        adapters = served_models(society, iteration)
        args += [
            "--enable-lora",
            "--max-loras",
            str(len(adapters)),
            "--max-lora-rank",
            str(spec.finetune.lora.r),
            "--lora-modules",
            *(f"{name}={paths.model_dir(name)}" for name in adapters),
        ]
    return args + list(spec.inference.extraArgs)


def servers(society: Society, iteration: int) -> list[str | None]:
    """What each inference Deployment serves: LoRA mode one server (None: base + adapters);
    full mode one per model of the iteration."""
    if society.spec.finetune.method == "lora" or iteration == 0:
        return [None]
    return list(served_models(society, iteration))


def build_server(
    society: Society, settings: Settings, iteration: int, served: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The vLLM Deployment and its Service for one server of iteration `iteration`."""
    name = server_name(society, served)
    compute = society.spec.inference
    container = {
        "name": "vllm",
        "image": compute.image or settings.vllm_image,
        "args": _vllm_args(society, settings, iteration, served or BASE_MODEL_NAME),
        "env": _env(society)
        + [
            {"name": "HF_HOME", "value": f"{settings.artifacts_mount}/.cache/huggingface"},
        ],
        "ports": [{"name": "http", "containerPort": VLLM_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": VLLM_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        # Loading weights takes minutes; the Society's startupDeadlineSeconds bounds it.
        "startupProbe": {
            "httpGet": {"path": "/health", "port": VLLM_PORT},
            "periodSeconds": 10,
            "failureThreshold": max(1, society.spec.startupDeadlineSeconds // 10),
        },
    }
    resources = _resources(compute)
    if resources:
        container["resources"] = resources
    pod_labels = labels(society, "inference", iteration=iteration)
    selector = {
        "app.kubernetes.io/instance": society.metadata.name,
        "app.kubernetes.io/component": "inference",
        LABEL_SERVER: name,
    }
    pod_labels[LABEL_SERVER] = name
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(society, name, "inference", iteration=iteration),
        "spec": {
            "replicas": 0 if society.spec.suspend else 1,
            "selector": {"matchLabels": selector},
            # Two copies of a model would not fit the GPUs: replace, don't surge.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": _pod_spec(society, compute, container, settings, "Always"),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(society, name, "inference", iteration=iteration),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http"}],
        },
    }
    return deployment, service


def server_url(society: Society, served: str | None = None) -> str:
    return f"http://{server_name(society, served)}.{society.metadata.namespace}.svc:{VLLM_PORT}/v1"


def openai_backend(society: Society, iteration: int) -> OpenAIBackend:
    """How the debate reaches the models of `iteration`: one URL, or one per model server."""
    if servers(society, iteration) == [None]:
        return OpenAIBackend(base_urls={}, default_base_url=server_url(society))
    return OpenAIBackend(
        base_urls={name: server_url(society, name) for name in served_models(society, iteration)}
    )


# --- jobs ----------------------------------------------------------------------------------------


def _job(
    society: Society,
    settings: Settings,
    name: str,
    component: str,
    compute: ComputeSpec,
    command: list[str],
    step_config: str,
    job_labels: dict[str, str | int],
) -> dict[str, Any]:
    container = {
        "name": component,
        "image": society.spec.training.image or settings.trainer_image,
        "command": command,
        "env": _env(society)
        + [
            {"name": "HF_HOME", "value": f"{settings.artifacts_mount}/.cache/huggingface"},
            {"name": STEP_CONFIG_ENV, "value": step_config},
        ],
    }
    resources = _resources(compute)
    if resources:
        container["resources"] = resources
    meta = metadata(society, name, component, **job_labels)
    if society.spec.queueName:
        meta["labels"][QUEUE_LABEL] = society.spec.queueName
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": society.spec.backoffLimit,
            # Kueue admits a suspended Job by unsuspending it; without a queue it starts at once.
            "suspend": bool(society.spec.queueName),
            "template": {
                "metadata": {"labels": labels(society, component, **job_labels)},
                "spec": _pod_spec(society, compute, container, settings, "Never"),
            },
        },
    }


def build_debate_job(
    society: Society, settings: Settings, iteration: int, training_only: bool = False
) -> tuple[dict[str, Any], DebateConfig]:
    config = debate_config(
        society,
        iteration,
        layout(society, settings),
        openai_backend(society, iteration),
        termination_log=Path(TERMINATION_LOG),
        embedding_model=settings.embedding_model,
        training_only=training_only,
    )
    # The debate is an HTTP client of the servers: a CPU and some memory, no GPU, any node.
    client = ComputeSpec(
        gpus=0,
        resources=ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"}),
        priorityClassName=society.spec.training.priorityClassName,
    )
    job = _job(
        society,
        settings,
        debate_job_name(society, iteration, training_only),
        "debate",
        client,
        ["society-trainer", "debate"],
        config.model_dump_json(),
        {"iteration": iteration},
    )
    return job, config


def build_training_jobs(
    society: Society, settings: Settings, iteration: int
) -> list[tuple[dict[str, Any], FinetuneConfig]]:
    """The Jobs that train iteration `iteration`'s models from iteration `iteration - 1`'s
    debate data, one per agent and role."""
    configs = finetune_configs(
        society,
        iteration - 1,
        layout(society, settings),
        base_model_location(society, settings),
        termination_log=Path(TERMINATION_LOG),
    )
    return [
        (
            _job(
                society,
                settings,
                training_job_name(society, config),
                "training",
                society.spec.training,
                ["society-trainer", "finetune"],
                config.model_dump_json(),
                {"iteration": config.iteration, "role": config.role, "agent": config.agent},
            ),
            config,
        )
        for config in configs
    ]
