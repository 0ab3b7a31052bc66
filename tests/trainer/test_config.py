"""FinetuneConfig's parts: a LoRA step gets the adapter's defaults, a full step carries no LoRA
settings, and a config in the old flat shape fails loudly instead of training with defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from society_trainer.config import FinetuneConfig, LoraConfig, TrainingConfig

STEP = {
    "iteration": 1,
    "agent": 0,
    "role": "generation",
    "model": {"base_model": "builtin:tiny-arithmetic"},
    "dataset": "data.jsonl",
    "output_dir": "out/gen-0-it1",
}


def test_a_lora_step_gets_the_adapter_defaults_and_round_trips():
    config = FinetuneConfig.model_validate(STEP)
    assert config.method == "lora" and config.lora == LoraConfig()
    assert config.training == TrainingConfig() and config.model.dtype == "auto"
    assert FinetuneConfig.model_validate_json(config.model_dump_json()) == config
    assert config.checkpoints == Path("out/gen-0-it1.checkpoints")


def test_a_full_step_carries_no_lora_settings():
    assert FinetuneConfig.model_validate({**STEP, "method": "full"}).lora is None
    with pytest.raises(ValidationError, match="lora is for method lora"):
        FinetuneConfig.model_validate({**STEP, "method": "full", "lora": {"r": 8}})


@pytest.mark.parametrize(
    "stale", [{"lora_r": 8}, {"epochs": 2}, {"base_model": "m"}, {"model": {"epochs": 2}}]
)
def test_a_field_outside_its_part_is_refused(stale):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        FinetuneConfig.model_validate({**STEP, **stale})


def test_parts_are_frozen():
    config = FinetuneConfig.model_validate(STEP)
    with pytest.raises(ValidationError):
        config.training.epochs = 3
