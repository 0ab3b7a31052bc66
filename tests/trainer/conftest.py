"""Fixtures for the trainer's tests: a tiny real model, built locally because nothing can be
downloaded, and a LoRA adapter for it. Both are session-scoped and read-only to tests: building
costs seconds, and every test that needs a model can share the same one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama with a byte-level ChatML tokenizer (seed 0)."""
    from society_trainer.models.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for `tiny_model_dir` that really changes its outputs.

    PEFT's default init zeroes LoRA's B matrix, which makes a fresh adapter a no-op; random
    init (`init_lora_weights=False`) stands in for an adapter that was trained.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        peft_model = get_peft_model(model, config)
    path = tmp_path_factory.mktemp("tiny-adapter")
    peft_model.save_pretrained(path)
    return path
