"""The vLLM servers of an iteration (Deployment + Service each), and how the debate reaches them.

LoRA mode: ONE server per Society, the base model plus every agent's adapter of the iteration
(`--enable-lora --lora-modules name=path`). Full finetuning: one server per model.
"""

from __future__ import annotations

from typing import Any

from society_trainer.config import OpenAIBackend

from ..api import Society
from ..settings import Settings
from .access import VLLM_PORT, api_key_env
from .names import LABEL_SERVER, QUEUE_LABEL, labels, metadata, server_name
from .pods import downloads_base_model, env, pod_spec, resources, review_annotations
from .steps import BASE_MODEL_NAME, base_model_location, layout, served_models

__all__ = ["VLLM_PORT", "build_server", "openai_backend", "server_url", "servers"]


def servers(society: Society, iteration: int) -> list[str | None]:
    """What each inference Deployment serves: LoRA mode one server (None: base + adapters);
    full mode one per model of the iteration."""
    if society.spec.finetune.method == "lora" or iteration == 0:
        return [None]
    return list(served_models(society, iteration))


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
        # The base model is the server's own (a base summariser asks for it by that name).
        adapters = [name for name in served_models(society, iteration) if name != BASE_MODEL_NAME]
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
        # Full finetuning serves later iterations' models from the volume: no download. The API
        # key from the Society's Secret (access.py): /v1 answers only the debate's client.
        "env": env(
            society, settings, downloads_base_model(society) and served in (None, BASE_MODEL_NAME)
        )
        + [api_key_env(society)],
        "ports": [{"name": "http", "containerPort": VLLM_PORT}],
        # A server busy with a debate's batch answers /health late, not never: 1 s (the
        # default) would take it out of the Service mid-debate.
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": VLLM_PORT},
            "periodSeconds": 5,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        # A server that stopped answering /health for 3 minutes (a hung engine) is restarted;
        # a busy one answers late, well within that.
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": VLLM_PORT},
            "periodSeconds": 30,
            "timeoutSeconds": 10,
            "failureThreshold": 6,
        },
        # Loading weights takes minutes; the Society's startupDeadlineSeconds bounds it.
        "startupProbe": {
            "httpGet": {"path": "/health", "port": VLLM_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 10,
            "failureThreshold": max(1, society.spec.startupDeadlineSeconds // 10),
        },
    }
    container_resources = resources(compute)
    if container_resources:
        container["resources"] = container_resources
    pod_labels = labels(society, "inference", iteration=iteration)
    selector = {
        "app.kubernetes.io/instance": society.metadata.name,
        "app.kubernetes.io/component": "inference",
        LABEL_SERVER: name,
    }
    pod_labels[LABEL_SERVER] = name
    pod = pod_spec(society, compute, container, settings, "Always")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **metadata(society, name, "inference", iteration=iteration),
            "annotations": review_annotations(pod),
        },
        "spec": {
            "replicas": 0 if society.spec.suspend else 1,
            "selector": {"matchLabels": selector},
            # Two copies of a model would not fit the GPUs: replace, don't surge.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": pod,
            },
        },
    }
    if society.spec.queueName:  # Kueue's Deployment integration admits each pod within quota
        deployment["metadata"]["labels"][QUEUE_LABEL] = society.spec.queueName
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
