"""Running a finetune step on more than one GPU: `accelerate launch` with a generated config.

Full finetuning of a 7B-8B model does not fit one GPU with AdamW states, so it shards parameters,
gradients and optimiser states across the pod's GPUs (FSDP full-shard, bf16), as the authors'
released script did. A LoRA step's trainable weights are tiny, so plain data parallelism (DDP)
is enough and avoids FSDP's wrapping constraints on PEFT models. The final save gathers a full
state dict on rank 0, so the output is an ordinary Hugging Face directory that vLLM loads.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .config import FinetuneConfig


def accelerate_config(config: FinetuneConfig) -> dict:
    """The `accelerate launch --config_file` contents for this step."""
    common = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": config.gpus,
        "mixed_precision": "no" if config.model.dtype == "float32" else "bf16",
        "use_cpu": False,
        "main_training_function": "main",
    }
    if config.method == "lora":
        return {**common, "distributed_type": "MULTI_GPU"}
    return {
        **common,
        "distributed_type": "FSDP",
        "fsdp_config": {
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,
        },
    }


def launch_command(step_config: Path, accelerate_file: Path, gpus: int) -> list[str]:
    """The command a multi-GPU pod runs instead of the plain step: the same step, per rank."""
    accelerate = shutil.which("accelerate") or "accelerate"
    return [
        accelerate,
        "launch",
        "--config_file",
        str(accelerate_file),
        "--num_processes",
        str(gpus),
        "-m",
        "society_trainer.cli",
        "finetune",
        "--config",
        str(step_config),
    ]


def inside_launcher() -> bool:
    """accelerate (torchrun underneath) sets LOCAL_RANK in every process it starts."""
    return "LOCAL_RANK" in os.environ


def relaunch(config: FinetuneConfig, step_config: Path | None) -> None:
    """Replace this process with `accelerate launch` of the same step (does not return)."""
    import yaml

    accelerate_file = config.checkpoints.with_name(config.checkpoints.name + ".accelerate.yaml")
    accelerate_file.parent.mkdir(parents=True, exist_ok=True)
    accelerate_file.write_text(yaml.safe_dump(accelerate_config(config), sort_keys=False))
    command = launch_command(step_config, accelerate_file, config.gpus)
    sys.stdout.flush()
    os.execvp(command[0], command)
