"""The Jobs of an iteration: the debate (an HTTP client of the servers) and the training steps.

Step configs reach pods as JSON in $SOCIETY_STEP_CONFIG, and pods report their result through
the termination message (society_trainer.results).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from society_trainer.config import STEP_CONFIG_ENV
from society_trainer.results import CONFIG_ERROR_EXIT_CODE

from ..api import Society
from ..api.kube import ResourceRequirements
from ..api.spec import ComputeSpec
from ..settings import Settings
from .access import api_key_env
from .child import JSON, Child, StepConfig
from .names import QUEUE_LABEL, debate_job_name, labels, metadata, training_job_name
from .pods import (
    TERMINATION_LOG,
    downloads_base_model,
    env,
    pod_spec,
    resources,
    review_annotations,
)
from .server import openai_backend
from .steps import (
    base_model_location,
    debate_config,
    finetune_config,
    layout,
    model_name,
    trained_roles,
)

DEBATE_COMMAND = ["society-trainer", "debate"]
FINETUNE_COMMAND = ["society-trainer", "finetune"]


def _job(
    society: Society,
    settings: Settings,
    name: str,
    component: str,
    compute: ComputeSpec,
    command: list[str],
    config: StepConfig,
    job_labels: dict[str, str | int],
    hub_token: bool,
    extra_env: Sequence[dict[str, Any]] = (),
) -> JSON:
    container: dict[str, Any] = {
        "name": component,
        "image": society.spec.training.image or settings.trainer_image,
        "command": command,
        "env": env(society, settings, hub_token)
        + list(extra_env)
        + [{"name": STEP_CONFIG_ENV, "value": config.model_dump_json()}],
    }
    container_resources = resources(compute)
    if container_resources:
        container["resources"] = container_resources
    pod = pod_spec(society, compute, container, settings, "Never")
    meta = metadata(society, name, component, **job_labels) | {
        "annotations": review_annotations(pod)
    }
    if society.spec.queueName:
        meta["labels"][QUEUE_LABEL] = society.spec.queueName
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": society.spec.backoffLimit,
            "podFailurePolicy": _pod_failure_policy(component),
            # Kueue admits a suspended Job by unsuspending it; without a queue it starts at once.
            "suspend": bool(society.spec.queueName),
            "template": {
                "metadata": {"labels": labels(society, component, **job_labels)},
                "spec": pod,
            },
        },
    }
    return body


def _pod_failure_policy(container: str) -> dict[str, Any]:
    """A pod evicted by a node drain or preempted (DisruptionTarget) is retried without counting
    against backoffLimit; a step that says its configuration is wrong (CONFIG_ERROR_EXIT_CODE)
    fails the Job at once, as a retry would fail the same way."""
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "In",
                    "values": [CONFIG_ERROR_EXIT_CODE],
                },
            },
        ]
    }


def build_debate_job(
    society: Society, settings: Settings, iteration: int, training_only: bool = False
) -> Child:
    """Iteration `iteration`'s debate; `training_only`: its train split alone (see
    steps.debate_config)."""
    name = debate_job_name(society, iteration, training_only)
    return Child("Job", name, partial(_debate_job, society, settings, iteration, training_only))


def _debate_job(
    society: Society, settings: Settings, iteration: int, training_only: bool
) -> tuple[JSON, StepConfig]:
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
        # Limits too: the client's CPU grows with debate.concurrency, its memory does not.
        resources=ResourceRequirements(
            requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "2", "memory": "4Gi"}
        ),
        priorityClassName=society.spec.training.priorityClassName,
    )
    body = _job(
        society,
        settings,
        debate_job_name(society, iteration, training_only),
        "debate",
        client,
        DEBATE_COMMAND,
        config,
        {"iteration": iteration},
        hub_token=False,  # an HTTP client of the servers: it downloads no weights
        # The servers' API key, by reference: never in the step config, which is plain text.
        extra_env=[api_key_env(society)],
    )
    return body, config


def build_training_jobs(society: Society, settings: Settings, iteration: int) -> list[Child]:
    """The Jobs that train iteration `iteration`'s models from iteration `iteration - 1`'s
    debate data, one per agent and role (steps.trained_roles' order)."""
    return [
        Child(
            "Job",
            training_job_name(society, model_name(society, role, agent, iteration)),
            partial(_training_job, society, settings, iteration, index),
        )
        for index, (agent, role) in enumerate(trained_roles(society))
    ]


def _training_job(
    society: Society, settings: Settings, iteration: int, index: int
) -> tuple[JSON, StepConfig]:
    config = finetune_config(
        society,
        iteration - 1,
        layout(society, settings),
        base_model_location(society, settings),
        index,
        termination_log=Path(TERMINATION_LOG),
    )
    body = _job(
        society,
        settings,
        training_job_name(society, config.output_dir.name),
        "training",
        society.spec.training,
        FINETUNE_COMMAND,
        config,
        {"iteration": config.iteration, "role": config.role, "agent": config.agent},
        hub_token=downloads_base_model(society),
    )
    return body, config
