"""`society-trainer debate`: one iteration's debate, its evaluation and its finetuning data.

Output directory layout (the operator and `society run` read it):
    eval/transcript.jsonl            the debate on the evaluation split
    train/transcript.jsonl           the debate on the training split (not in the last iteration)
    data/agent-<n>/<role>.jsonl      each agent's finetuning data for the next iteration
    summary.json                     the numbers (results.DebateResult); also, compactly, the
                                     pod's termination message
"""

from __future__ import annotations

import asyncio
import logging
import time

from .config import DebateConfig, TransformersBackend
from .debate import Debate, DebateSetup
from .evaluation import evaluate, mean_consensus
from .finetune_data import build_agent_data, single_agent_data, star_data, write_agent_data
from .generation import make_generator
from .results import DebateResult, EvalResult, TrainSplitResult
from .tasks import Task, get_task
from .tasks.base import PromptTemplates

log = logging.getLogger(__name__)


def resolve_prompts(task: Task, config: DebateConfig) -> PromptTemplates:
    """The task's templates with the Society's overrides on top."""
    overrides = config.task
    return PromptTemplates(
        generation=overrides.generation_prompt or task.prompts.generation,
        critic=overrides.critic_prompt or task.prompts.critic,
        summarizer=overrides.summarizer_prompt or task.prompts.summarizer,
    )


def _base_model(config: DebateConfig) -> str | None:
    """The base model the in-process generator loads; a server's is what it serves."""
    backend = config.backend
    if isinstance(backend, TransformersBackend):
        return f"{backend.base_model}@{backend.base_model_revision or 'default'}/{backend.dtype}"
    return None


async def run_debate_step(config: DebateConfig) -> DebateResult:
    started = time.monotonic()
    task = get_task(config.task.name, config.task.max_value, config.task.levels)
    setup = DebateSetup(
        task=task,
        prompts=resolve_prompts(task, config),
        agents=config.agents,
        rounds=config.rounds,
        summarize=config.summarize,
        sampling=config.sampling,
        seed=config.task.seed * 1_000_003 + config.iteration,
        summarizer=config.summarizer,
        base_model=_base_model(config),
    )
    generator = make_generator(config.backend, config.concurrency)
    evaluation: EvalResult | None = None
    train: TrainSplitResult | None = None
    datasets: list[dict] | None = None
    out = config.output_dir
    try:
        debate = Debate(setup, generator)
        for split in config.splits:
            size = config.task.eval_size if split == "eval" else config.task.train_size
            problems = task.load(split, size, config.task.seed, config.task.source)
            label = f"iteration {config.iteration} {split}"
            records = await debate.run(problems, out / split / "transcript.jsonl", label)
            if split == "eval":
                evaluation = evaluate(records, task, config.embedding_model).as_summary()
                log.info("%s: accuracy %.3f", label, evaluation.accuracy)
            else:
                per_agent = build_agent_data(
                    records,
                    len(config.agents),
                    config.critic_mix_weight,
                    task.answers_equal,
                    seed=setup.seed,
                )
                multiagent = config.mode == "multiagent"
                if config.mode == "star":
                    data = [star_data(records, len(config.agents), task.is_correct)]
                else:
                    data = per_agent if multiagent else [single_agent_data(per_agent)]
                datasets = write_agent_data(
                    out / "data", data, with_critic=multiagent and config.rounds > 1
                )
                train = TrainSplitResult(
                    questions=len(records),
                    withMajority=sum(r.majority is not None for r in records),
                    consensus=round(mean_consensus(records, task.answers_equal), 6),
                    corrected=[d.corrected for d in per_agent],
                    keptCorrect=[d.kept_correct for d in per_agent],
                )
    finally:
        await generator.aclose()
    result = DebateResult(
        iteration=config.iteration,
        mode=config.mode,
        eval=evaluation,
        train=train,
        datasets=datasets,
        seconds=round(time.monotonic() - started, 3),
    )
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "summary.json"
    kept = result
    if config.splits == ["train"] and saved.exists():
        # The train split of an iteration already evaluated (finetune.iterations was raised):
        # the file keeps the evaluation too.
        previous = DebateResult.model_validate_json(saved.read_text())
        kept = DebateResult.model_validate(
            {**previous.model_dump(exclude_none=True), **result.model_dump(exclude_none=True)}
        )
    saved.write_text(kept.model_dump_json(indent=2, exclude_none=True) + "\n")
    if config.termination_log is not None:
        config.termination_log.write_text(result.termination_message())
    return result


def debate(config: DebateConfig) -> DebateResult:
    return asyncio.run(run_debate_step(config))
