"""The Society models: defaults are the paper's, and a four-line spec is a whole experiment."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from society_operator.api import Society
from society_trainer.config import VLLM_LORA_RANKS


def test_minimal_spec_gets_the_papers_defaults(minimal_society):
    spec = Society.model_validate(minimal_society).spec
    assert (spec.agents, spec.debate.rounds, spec.mode) == (3, 2, "multiagent")
    assert (spec.debate.temperature, spec.debate.topP, spec.debate.maxTokens) == (1.0, 0.9, 2048)
    assert spec.debate.summarize is True
    ft = spec.finetune
    assert ft.method == "lora"
    assert (ft.generation.epochs, ft.generation.learningRate) == (2, 5e-6)
    assert (ft.critic.epochs, ft.critic.learningRate) == (1, 5e-7)
    assert (ft.laterIterationsLearningRate, ft.weightDecay, ft.batchSize) == (5e-7, 1e-3, 1)
    assert (ft.maxLength, ft.warmupRatio, ft.lrScheduler) == (2048, 0.03, "cosine")
    assert ft.criticMixWeight == pytest.approx(2 / 3, abs=0.01)
    assert (ft.critic.loss, ft.critic.overlongRows) == ("finalAnswer", "drop")
    assert spec.debate.summarizer == "critic"
    assert (spec.task.trainSize, spec.task.evalSize, spec.task.seed) == (500, 500, 0)
    assert spec.inference.gpus == 1 and spec.training.gpus == 1
    assert spec.storage.claimName is None and spec.storage.whenDeleted == "Retain"
    assert spec.suspend is False and spec.backoffLimit == 2


def test_fields_accept_python_names_and_serialise_camel_case(minimal_society):
    society = Society.model_validate(minimal_society)
    manifest = society.to_manifest()
    assert "topP" in manifest["spec"]["debate"] and "top_p" not in manifest["spec"]["debate"]
    assert Society.model_validate(manifest) == society


def test_lora_ranks_are_the_ones_vllm_serves(minimal_society):
    for rank in VLLM_LORA_RANKS:
        minimal_society["spec"]["finetune"] = {"lora": {"r": rank}}
        Society.model_validate(minimal_society)
    minimal_society["spec"]["finetune"] = {"lora": {"r": 24}}
    with pytest.raises(ValidationError, match="16, 32, 64"):
        Society.model_validate(minimal_society)


@pytest.mark.parametrize("name", ["a", "phi3-gsm8k", "x" * 40])
def test_society_names_that_prefix_child_names(minimal_society, name):
    minimal_society["metadata"]["name"] = name
    Society.model_validate(minimal_society)


@pytest.mark.parametrize("name", ["x" * 41, "Phi3", "3phi", "phi.gsm8k", "phi-"])
def test_society_names_that_cannot_prefix_child_names(minimal_society, name):
    minimal_society["metadata"]["name"] = name
    with pytest.raises(ValidationError, match=re.escape("metadata.name must be at most 40")):
        Society.model_validate(minimal_society)


def test_status_tolerates_fields_from_a_newer_operator(minimal_society):
    minimal_society["status"] = {"phase": "Debating", "iteration": 1, "addedLater": {"x": 1}}
    status = Society.model_validate(minimal_society).status
    assert status.phase == "Debating" and status.iteration == 1


def test_math_levels_are_one_to_five_and_only_for_math(minimal_society):
    minimal_society["spec"]["task"] = {"name": "math", "levels": [1, 5]}
    assert Society.model_validate(minimal_society).spec.task.levels == [1, 5]
    minimal_society["spec"]["task"] = {"name": "math"}
    assert Society.model_validate(minimal_society).spec.task.levels is None  # the paper's 1-3
    for bad in ([0], [6], []):
        minimal_society["spec"]["task"] = {"name": "math", "levels": bad}
        with pytest.raises(ValidationError):
            Society.model_validate(minimal_society)
    minimal_society["spec"]["task"] = {"name": "gsm8k", "levels": [1]}
    with pytest.raises(ValidationError, match="levels is only for name math"):
        Society.model_validate(minimal_society)
