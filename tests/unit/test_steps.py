"""From a Society to its step configs: models, datasets and hyperparameters per iteration."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from society_operator.api import Society
from society_operator.build.steps import (
    BASE_MODEL_NAME,
    Layout,
    debate_config,
    finetune_configs,
    served_models,
)
from society_trainer.config import OpenAIBackend

LAYOUT = Layout(Path("/artifacts/phi3"))
BACKEND = OpenAIBackend(base_urls={}, default_base_url="http://phi3-vllm:8000/v1")


def society(minimal_society, **spec) -> Society:
    minimal_society["spec"].update(spec)
    minimal_society["spec"].setdefault("finetune", {}).setdefault("iterations", 3)
    return Society.model_validate(minimal_society)


def test_iteration_zero_debates_the_base_model_on_both_splits(minimal_society):
    config = debate_config(society(minimal_society), 0, LAYOUT, BACKEND)
    assert [(a.generation.name, a.critic.name) for a in config.agents] == [("base", "base")] * 3
    assert config.splits == ["eval", "train"]
    assert config.output_dir == Path("/artifacts/phi3/iterations/0/debate")
    assert (config.rounds, config.summarize, config.concurrency) == (2, True, 64)
    assert (config.sampling.temperature, config.sampling.top_p) == (1.0, 0.9)
    assert config.task.name == "gsm8k" and config.task.eval_size == 500


def test_later_iterations_debate_the_models_the_previous_one_trained(minimal_society):
    soc = society(minimal_society)
    trained = {c.output_dir for c in finetune_configs(soc, 1, LAYOUT, "microsoft/phi3")}
    config = debate_config(soc, 2, LAYOUT, BACKEND)
    refs = [ref for a in config.agents for ref in (a.generation, a.critic)]
    assert {ref.path for ref in refs} == trained
    assert [a.generation.name for a in config.agents] == ["gen-0-it2", "gen-1-it2", "gen-2-it2"]
    assert served_models(soc, 2) == sorted(ref.name for ref in refs)
    assert served_models(soc, 0) == [BASE_MODEL_NAME]


def test_the_last_iteration_only_evaluates(minimal_society):
    soc = society(minimal_society)
    assert debate_config(soc, 3, LAYOUT, BACKEND).splits == ["eval"]
    assert debate_config(soc, 2, LAYOUT, BACKEND).splits == ["eval", "train"]


def test_finetune_configs_follow_the_papers_schedule(minimal_society):
    soc = society(minimal_society)
    first = finetune_configs(soc, 0, LAYOUT, "microsoft/phi3")
    assert [(c.agent, c.role) for c in first] == [
        (n, role) for n in range(3) for role in ("generation", "critic")
    ]
    gen, critic = first[0], first[1]
    assert (gen.training.epochs, gen.training.learning_rate) == (2, 5e-6)
    assert (critic.training.epochs, critic.training.learning_rate) == (1, 5e-7)
    assert gen.model.init_from is None and gen.iteration == 1
    assert gen.dataset == Path("/artifacts/phi3/iterations/0/debate/data/agent-0/generation.jsonl")
    assert gen.output_dir == Path("/artifacts/phi3/models/gen-0-it1")
    assert (gen.lora.r, gen.training.weight_decay, gen.method) == (16, 1e-3, "lora")
    assert gen.model.base_model_revision == "main"  # what vLLM serves: --revision main

    later = finetune_configs(soc, 1, LAYOUT, "microsoft/phi3")
    assert {c.training.learning_rate for c in later} == {5e-7}
    assert later[1].model.init_from == Path("/artifacts/phi3/models/critic-0-it1")
    assert later[1].output_dir == Path("/artifacts/phi3/models/critic-0-it2")
    assert len({c.training.seed for c in later}) == len(later)


def test_single_agent_mode_trains_one_model_on_pooled_data(minimal_society):
    soc = society(minimal_society, mode="single-agent")
    (config,) = finetune_configs(soc, 1, LAYOUT, "m")
    assert config.output_dir == Path("/artifacts/phi3/models/agent-it2")
    assert config.model.init_from == Path("/artifacts/phi3/models/agent-it1")
    assert config.dataset.parts[-2:] == ("agent-0", "generation.jsonl")
    agents = debate_config(soc, 2, LAYOUT, BACKEND).agents
    assert {ref.name for a in agents for ref in (a.generation, a.critic)} == {"agent-it2"}


def test_star_mode_trains_one_model_too(minimal_society):
    soc = society(minimal_society, mode="star")
    (config,) = finetune_configs(soc, 0, LAYOUT, "m")
    assert (config.role, config.output_dir.name) == ("generation", "agent-it1")
    assert debate_config(soc, 0, LAYOUT, BACKEND).mode == "star"
    assert served_models(soc, 1) == ["agent-it1"]


def test_one_round_debates_train_no_critics(minimal_society):
    soc = society(minimal_society, debate={"rounds": 1})
    assert {c.role for c in finetune_configs(soc, 0, LAYOUT, "m")} == {"generation"}


def test_one_round_debates_serve_and_start_from_no_critic(minimal_society):
    """No critic is trained, so none may be served (vLLM refuses a missing adapter) or named as
    an agent's model, nor be the next iteration's starting point."""
    soc = society(minimal_society, debate={"rounds": 1})
    assert served_models(soc, 2) == ["gen-0-it2", "gen-1-it2", "gen-2-it2"]
    agents = debate_config(soc, 2, LAYOUT, BACKEND).agents
    assert {a.critic.name for a in agents} == {"gen-0-it2", "gen-1-it2", "gen-2-it2"}
    assert all(
        not str(c.model.init_from).count("critic") for c in finetune_configs(soc, 1, LAYOUT, "m")
    )
    with_critics = society(minimal_society, debate={"rounds": 2})
    assert "critic-0-it2" in served_models(with_critics, 2)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_method_and_gpus_reach_the_training_step(minimal_society, method):
    soc = society(
        minimal_society, training={"gpus": 4}, finetune={"method": method, "iterations": 2}
    )
    config = finetune_configs(soc, 0, LAYOUT, "m")[0]
    assert (config.method, config.gpus) == (method, 4)


def test_math_levels_reach_the_debate_step(minimal_society):
    """The paper's MATH problems are levels 1 to 3: the default; the spec may name others."""
    gsm8k = society(copy.deepcopy(minimal_society))
    assert debate_config(gsm8k, 0, LAYOUT, BACKEND).task.levels is None
    math = society(copy.deepcopy(minimal_society), task={"name": "math"})
    assert debate_config(math, 0, LAYOUT, BACKEND).task.levels == (1, 2, 3)
    chosen = society(minimal_society, task={"name": "math", "levels": [5, 4, 4]})
    assert debate_config(chosen, 0, LAYOUT, BACKEND).task.levels == (4, 5)


def test_who_summarises(minimal_society):
    """Each agent's own critic by default; the base model in every iteration with `base`."""
    default = society(copy.deepcopy(minimal_society))
    assert debate_config(default, 2, LAYOUT, BACKEND).summarizer is None
    assert BASE_MODEL_NAME not in served_models(default, 2)
    base = society(copy.deepcopy(minimal_society), debate={"summarizer": "base"})
    summarizer = debate_config(base, 2, LAYOUT, BACKEND).summarizer
    assert (summarizer.name, summarizer.path) == (BASE_MODEL_NAME, None)  # the base weights
    assert BASE_MODEL_NAME in served_models(base, 2)
    unsummarised = society(minimal_society, debate={"summarizer": "base", "summarize": False})
    assert debate_config(unsummarised, 2, LAYOUT, BACKEND).summarizer is None
    assert BASE_MODEL_NAME not in served_models(unsummarised, 2)


def test_critic_rows_settings_reach_every_training_step(minimal_society):
    """By default a critic row teaches its final answer and an overlong one is left out."""
    default = finetune_configs(society(copy.deepcopy(minimal_society)), 0, LAYOUT, "m")
    assert {(c.training.loss_on, c.training.overlong_exchanges) for c in default} == {
        ("final_answer", "drop")
    }
    chosen = society(
        minimal_society,
        finetune={"critic": {"loss": "allAssistantTurns", "overlongRows": "truncate"}},
    )
    assert {
        (c.training.loss_on, c.training.overlong_exchanges)
        for c in finetune_configs(chosen, 0, LAYOUT, "m")
    } == {("all_assistant_turns", "truncate")}
