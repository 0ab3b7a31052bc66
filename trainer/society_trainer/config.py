"""What each step needs, as typed configs: the contract between whoever starts a step (the
operator, through a Job's config file; `society run`, through a subprocess) and the step itself.

Pure pydantic, importable without torch: the operator builds these from a Society. Paths are
explicit and absolute-or-relative to the working directory, so a step never guesses where the
artifacts of another step live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskName = Literal["arithmetic", "gsm8k", "math", "mmlu", "custom", "tiny-equations"]
Split = Literal["train", "eval"]
Role = Literal["generation", "critic"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]

# Ranks a vLLM server accepts for --max-lora-rank (vllm.config.lora.MaxLoRARanks): an adapter of
# any other rank would train fine and then fail to load for the next debate.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# The MATH difficulty levels the paper drew its problems from (of 1 to 5): a Society's default.
MATH_PAPER_LEVELS = (1, 2, 3)


class StepModel(BaseModel):
    """Base of every step config: unknown keys are errors, so a stale config fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(StepModel):
    name: TaskName
    source: str | None = None
    train_size: int = Field(500, ge=1)
    eval_size: int = Field(500, ge=1)
    seed: int = 0
    max_value: int | None = Field(None, ge=1)  # arithmetic: values in 0..max_value (default 29)
    levels: tuple[Annotated[int, Field(ge=1, le=5)], ...] | None = (
        None  # math: these only (None: all)
    )
    generation_prompt: str | None = None
    critic_prompt: str | None = None
    summarizer_prompt: str | None = None


class SamplingConfig(StepModel):
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1)


class ModelRef(StepModel):
    """One model a debate talks to. `name` is what the server calls it (a vLLM --lora-modules
    name such as gen-1-it2, or the served base model); `path` is where its weights are, which
    only the in-process generator reads (None means the base model itself)."""

    name: str
    path: Path | None = None


class AgentModels(StepModel):
    """The two models of agent n: A^G_n answers round 1, A^C_n answers the later rounds."""

    generation: ModelRef
    critic: ModelRef


class OpenAIBackend(StepModel):
    """Talk to OpenAI-compatible servers (vLLM). One base URL per model name, because full
    finetuning serves one model per server; LoRA mode maps every name to the same server."""

    kind: Literal["openai"] = "openai"
    base_urls: dict[str, str]
    default_base_url: str | None = None
    api_key: str = "EMPTY"
    timeout_seconds: float = Field(600.0, gt=0)
    max_retries: int = Field(6, ge=0)


class TransformersBackend(StepModel):
    """Generate in-process with transformers (+ PEFT adapters): `society run` and tests."""

    kind: Literal["transformers"] = "transformers"
    base_model: Path
    base_model_revision: str | None = None  # of a Hugging Face id; the default branch if None
    batch_size: int = Field(16, ge=1)
    dtype: Dtype = "auto"
    device: str = "cpu"  # a torch device, or "auto": the GPU if there is one, else the CPU


Backend = Annotated[OpenAIBackend | TransformersBackend, Field(discriminator="kind")]


class DebateConfig(StepModel):
    """`society-trainer debate`: debate the eval split (accuracy of this iteration) and, unless
    this is the last iteration, the train split (the next iteration's finetuning data)."""

    iteration: int = Field(ge=0)
    task: TaskConfig
    mode: Literal["multiagent", "single-agent", "star"] = "multiagent"
    agents: list[AgentModels] = Field(min_length=1)
    summarizer: ModelRef | None = None
    rounds: int = Field(2, ge=1)
    summarize: bool = True
    sampling: SamplingConfig = SamplingConfig()
    concurrency: int = Field(64, ge=1)
    backend: Backend
    splits: list[Split] = ["eval", "train"]
    critic_mix_weight: float = Field(0.67, ge=0.0, le=1.0)
    embedding_model: str | None = None
    output_dir: Path
    termination_log: Path | None = None


class AnalysisConfig(StepModel):
    """`society-trainer analyse`: one iteration's eval debate (the transcript that `debate`
    step wrote) read as Table 1's arms read it, with likelihood diversity under its agents'
    models. `society compare` runs it; no Society needs it."""

    debate: DebateConfig  # the iteration's debate: task, agents' models, base model, output_dir
    embedding_model: str | None = None
    likelihood_questions: int = Field(64, ge=0)  # the first this many eval questions
    output: Path


class BaseModelConfig(StepModel):
    """The weights a finetune step starts from (as TRL's ModelConfig): what it loads, not how
    it trains."""

    base_model: str  # a local model directory or a Hugging Face id (the tokenizer comes from it)
    base_model_revision: str | None = None  # of a Hugging Face id; the default branch if None
    init_from: Path | None = None  # the agent's previous adapter or model; None: the base model
    dtype: Dtype = "auto"


class LoraConfig(StepModel):
    """The adapter a LoRA step trains (PEFT's LoraConfig, restricted to what vLLM serves)."""

    r: Literal[VLLM_LORA_RANKS] = 16  # type: ignore[valid-type]
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str = "all-linear"  # or comma-separated module names


class TrainingConfig(StepModel):
    """The optimisation (as TRL's SFTConfig): the same for LoRA and full finetuning."""

    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(5e-6, gt=0.0)
    weight_decay: float = Field(1e-3, ge=0.0)
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=16)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    gradient_checkpointing: bool = True
    save_steps: int = Field(50, ge=1)
    seed: int = 0
    # Which answers of a row the loss covers: its last (a critic row's final answer), or all.
    loss_on: Literal["final_answer", "all_assistant_turns"] = "final_answer"
    # A row with several answers (a critic exchange) over max_length: left out, or cut short.
    overlong_exchanges: Literal["drop", "truncate"] = "drop"


class FinetuneConfig(StepModel):
    """`society-trainer finetune`: one agent in one role, one iteration.

    `lora` is the adapter's shape for method lora (its defaults when left out) and must be
    absent for method full, so a config never carries settings that are silently ignored."""

    iteration: int = Field(ge=1)  # the iteration whose weights this step produces
    agent: int = Field(ge=0)
    role: Role
    model: BaseModelConfig
    dataset: Path
    output_dir: Path  # the adapter or model that vLLM will serve
    checkpoint_dir: Path | None = None  # default: <output_dir>.checkpoints
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig | None = None
    training: TrainingConfig = TrainingConfig()
    gpus: int = Field(0, ge=0)
    termination_log: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _lora_defaults(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("method", "lora") == "lora"
            and data.get("lora") is None
        ):
            return {**data, "lora": LoraConfig()}
        return data

    @model_validator(mode="after")
    def _lora_only_for_lora(self) -> FinetuneConfig:
        if self.method == "full" and self.lora is not None:
            raise ValueError("lora is for method lora; method full trains every weight")
        return self

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.output_dir.with_name(
            self.output_dir.name + ".checkpoints"
        )


# Where a pod's step config arrives when no file is given: the operator puts the JSON here, and
# processes that `accelerate launch` starts inherit it.
STEP_CONFIG_ENV = "SOCIETY_STEP_CONFIG"


def load_config(path: Path | None, model: type[StepModel]) -> StepModel:
    """Read a step config from a JSON or YAML file, or from $SOCIETY_STEP_CONFIG without one."""
    import os

    import yaml  # a dependency of the base install; imported here to keep this module cheap

    if path is not None:
        return model.model_validate(yaml.safe_load(Path(path).read_text()))
    text = os.environ.get(STEP_CONFIG_ENV)
    if text is None:
        raise ValueError(f"no step config: pass --config FILE or set {STEP_CONFIG_ENV}")
    return model.model_validate_json(text)
