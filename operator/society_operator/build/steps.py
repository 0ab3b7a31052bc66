"""From a Society to the configs of its steps, and where their artifacts live.

The operator (Jobs on a cluster) and `society run` (subprocesses on one machine) run the same
steps with the same configs; only the backend (vLLM servers or in-process transformers), the
artifact root and the termination-message path differ, so those are parameters here.

Artifact layout under one Society's root (a directory on the artifact volume):
    iterations/<i>/debate/            the debate of iteration i (society_trainer.debate_step)
    models/<role>-<n>-it<i>/          agent n's weights after i finetuning iterations (i >= 1)
Model names double as vLLM adapter names, immutable per iteration (a server never has to
reload a name), e.g. gen-0-it2 and critic-2-it1; single-agent and star modes have one model,
agent-it<i>.
Iteration 0 debates with the base model, which a vLLM server serves as BASE_MODEL_NAME.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from society_trainer.config import (
    MATH_PAPER_LEVELS,
    AgentModels,
    BaseModelConfig,
    DebateConfig,
    FinetuneConfig,
    LoraConfig,
    ModelRef,
    OpenAIBackend,
    SamplingConfig,
    Split,
    TaskConfig,
    TrainingConfig,
    TransformersBackend,
)

from ..api import Society
from ..settings import Settings

BASE_MODEL_NAME = "base"
ROLE_PREFIX = {"generation": "gen", "critic": "critic"}
CRITIC_LOSS = {"finalAnswer": "final_answer", "allAssistantTurns": "all_assistant_turns"}


@dataclass(frozen=True)
class Layout:
    """Where one Society's artifacts are, as the step that reads or writes them sees the path."""

    root: Path

    def debate_dir(self, iteration: int) -> Path:
        return self.root / "iterations" / str(iteration) / "debate"

    def dataset(self, iteration: int, agent: int, role: str) -> Path:
        return self.debate_dir(iteration) / "data" / f"agent-{agent}" / f"{role}.jsonl"

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def on_volume(self, path: str) -> Path:
        """An absolute path on the artifact volume (spec.model.name, spec.task.source), as the
        step sees it: under the volume's mount point, which holds every Society's root."""
        return self.root.parent / path.lstrip("/")


def layout(society: Society, settings: Settings) -> Layout:
    """Each Society's artifacts sit in a directory of their own on the claim."""
    return Layout(Path(settings.artifacts_mount) / society.metadata.name)


def base_model_location(society: Society, settings: Settings) -> str:
    """A Hugging Face id as it is; a path is a path on the artifact volume."""
    name = society.spec.model.name
    return f"{settings.artifacts_mount}{name}" if name.startswith("/") else name


def task_source(society: Society, layout: Layout) -> str | None:
    """A Hugging Face dataset id as it is; a path is a path on the artifact volume."""
    source = society.spec.task.source
    return str(layout.on_volume(source)) if source and source.startswith("/") else source


ONE_MODEL_MODES = ("single-agent", "star")


def model_name(society: Society, role: str, agent: int, iteration: int) -> str:
    if society.spec.mode in ONE_MODEL_MODES:
        return f"agent-it{iteration}"
    return f"{ROLE_PREFIX[role]}-{agent}-it{iteration}"


def agent_models(society: Society, layout: Layout, iteration: int) -> list[AgentModels]:
    """Who answers in iteration `iteration`'s debate: the base model, then the finetuned ones.
    A one-round debate has no later rounds, so no critic agents: none is trained, and its
    critic slot names the agent's generation model, so that no server is asked to load an
    adapter that was never trained (vLLM refuses to start on a missing --lora-modules path)."""
    if iteration == 0:
        base = ModelRef(name=BASE_MODEL_NAME)
        return [AgentModels(generation=base, critic=base) for _ in range(society.spec.agents)]
    critic_role = "critic" if "critic" in {role for _, role in trained_roles(society)} else None

    def ref(role: str, agent: int) -> ModelRef:
        name = model_name(society, role, agent, iteration)
        return ModelRef(name=name, path=layout.model_dir(name))

    return [
        AgentModels(generation=ref("generation", n), critic=ref(critic_role or "generation", n))
        for n in range(society.spec.agents)
    ]


def summarizer_model(society: Society) -> ModelRef | None:
    """The summariser every critic turn asks, if spec.debate.summarizer names one; None: each
    agent's critic summarises for itself (and no debate without summaries asks anyone)."""
    debate = society.spec.debate
    if debate.summarizer == "base" and debate.summarize and debate.rounds > 1:
        return ModelRef(name=BASE_MODEL_NAME)
    return None


def served_models(society: Society, iteration: int) -> list[str]:
    """Every model name the debate of `iteration` asks for (what the servers must offer)."""
    names = {
        ref.name
        for models in agent_models(society, Layout(Path("/")), iteration)
        for ref in (models.generation, models.critic)
    }
    summarizer = summarizer_model(society)
    if summarizer is not None:
        names.add(summarizer.name)
    return sorted(names)


def debate_splits(society: Society, iteration: int, training_only: bool = False) -> list[Split]:
    """What the debate of `iteration` debates: see debate_config."""
    if training_only:
        return ["train"]
    return ["eval"] if iteration >= society.spec.finetune.iterations else ["eval", "train"]


def debate_config(
    society: Society,
    iteration: int,
    layout: Layout,
    backend: OpenAIBackend | TransformersBackend,
    termination_log: Path | None = None,
    embedding_model: str | None = None,
    training_only: bool = False,
) -> DebateConfig:
    """The debate of `iteration`: always the eval split; the train split unless it is the last.
    `training_only`: the train split alone, for a last iteration that finetune.iterations,
    raised later, made one more to train from."""
    spec = society.spec
    task, debate = spec.task, spec.debate
    return DebateConfig(
        iteration=iteration,
        task=TaskConfig(
            name=task.name,
            source=task_source(society, layout),
            train_size=task.trainSize,
            eval_size=task.evalSize,
            seed=task.seed,
            max_value=task.maxValue,
            levels=task_levels(society),
            generation_prompt=task.prompts.generation,
            critic_prompt=task.prompts.critic,
            summarizer_prompt=task.prompts.summarizer,
        ),
        mode=spec.mode,
        agents=agent_models(society, layout, iteration),
        summarizer=summarizer_model(society),
        rounds=debate.rounds,
        summarize=debate.summarize,
        sampling=SamplingConfig(
            temperature=debate.temperature, top_p=debate.topP, max_tokens=debate.maxTokens
        ),
        concurrency=debate.concurrency,
        backend=backend,
        splits=debate_splits(society, iteration, training_only),
        critic_mix_weight=spec.finetune.criticMixWeight,
        embedding_model=embedding_model,
        output_dir=layout.debate_dir(iteration),
        termination_log=termination_log,
    )


def task_levels(society: Society) -> tuple[int, ...] | None:
    """The MATH levels to draw from: the spec's, or the paper's 1 to 3; None for other tasks."""
    task = society.spec.task
    if task.name != "math":
        return None
    return tuple(sorted(set(task.levels))) if task.levels else MATH_PAPER_LEVELS


def trained_roles(society: Society) -> list[tuple[int, str]]:
    """(agent, role) of each model a finetuning iteration trains. Critics learn from later
    rounds, so a one-round debate trains none; single-agent and star modes train their one
    model."""
    spec = society.spec
    if spec.mode in ONE_MODEL_MODES:
        return [(0, "generation")]
    roles = ["generation", "critic"] if spec.debate.rounds > 1 else ["generation"]
    return [(n, role) for n in range(spec.agents) for role in roles]


def finetune_configs(
    society: Society,
    iteration: int,
    layout: Layout,
    base_model: str,
    termination_log: Path | None = None,
) -> list[FinetuneConfig]:
    """The steps that turn iteration `iteration`'s debate data into iteration+1's models.
    `base_model` is where the steps find the base weights (a path, or a Hugging Face id)."""
    return [
        finetune_config(society, iteration, layout, base_model, index, termination_log)
        for index in range(len(trained_roles(society)))
    ]


def finetune_config(
    society: Society,
    iteration: int,
    layout: Layout,
    base_model: str,
    index: int,
    termination_log: Path | None = None,
) -> FinetuneConfig:
    """The `index`th of finetune_configs (trained_roles' order)."""
    spec, ft = society.spec, society.spec.finetune
    agent, role = trained_roles(society)[index]
    lora = None
    if ft.method == "lora":
        lora = LoraConfig(
            r=ft.lora.r,
            alpha=ft.lora.alpha,
            dropout=ft.lora.dropout,
            target_modules=ft.lora.targetModules,
        )
    hyper = ft.generation if role == "generation" else ft.critic
    previous = model_name(society, role, agent, iteration)
    output = model_name(society, role, agent, iteration + 1)
    return FinetuneConfig(
        iteration=iteration + 1,
        agent=agent,
        role=role,
        model=BaseModelConfig(
            base_model=base_model,
            base_model_revision=spec.model.revision,
            init_from=layout.model_dir(previous) if iteration > 0 else None,
            dtype=spec.model.dtype,
        ),
        dataset=layout.dataset(iteration, agent, role),
        output_dir=layout.model_dir(output),
        method=ft.method,
        lora=lora,
        training=TrainingConfig(
            epochs=hyper.epochs,
            learning_rate=hyper.learningRate if iteration == 0 else ft.laterIterationsLearningRate,
            weight_decay=ft.weightDecay,
            batch_size=ft.batchSize,
            gradient_accumulation_steps=ft.gradientAccumulationSteps,
            max_length=ft.maxLength,
            warmup_ratio=ft.warmupRatio,
            lr_scheduler=ft.lrScheduler,
            gradient_checkpointing=ft.gradientCheckpointing,
            save_steps=ft.saveSteps,
            seed=(spec.task.seed * 1_000_003 + iteration) * 1_000 + index,
            # How critic exchanges are trained, wherever they are (a generation row has
            # one answer, which both settings teach alike).
            loss_on=CRITIC_LOSS[ft.critic.loss],
            overlong_exchanges=ft.critic.overlongRows,
        ),
        gpus=spec.training.gpus,
        termination_log=termination_log,
    )
