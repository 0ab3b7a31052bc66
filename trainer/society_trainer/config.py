"""What each step needs, as typed configs: the contract between whoever starts a step (the
operator, through a Job's config file; `society run`, through a subprocess) and the step itself.

Pure pydantic, importable without torch: the operator builds these from a Society. Paths are
explicit and absolute-or-relative to the working directory, so a step never guesses where the
artifacts of another step live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskName = Literal["arithmetic", "gsm8k", "math", "mmlu", "custom"]
Split = Literal["train", "eval"]


class StepModel(BaseModel):
    """Base of every step config: unknown keys are errors, so a stale config fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(StepModel):
    name: TaskName
    source: str | None = None
    train_size: int = Field(500, ge=1)
    eval_size: int = Field(500, ge=1)
    seed: int = 0
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
    batch_size: int = Field(16, ge=1)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: str = "cpu"


Backend = Annotated[OpenAIBackend | TransformersBackend, Field(discriminator="kind")]


class DebateConfig(StepModel):
    """`society-trainer debate`: debate the eval split (accuracy of this iteration) and, unless
    this is the last iteration, the train split (the next iteration's finetuning data)."""

    iteration: int = Field(ge=0)
    task: TaskConfig
    mode: Literal["multiagent", "single-agent"] = "multiagent"
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


def load_config(path: Path, model: type[StepModel]) -> StepModel:
    """Read a step config from a JSON or YAML file."""
    import yaml  # a dependency of the base install; imported here to keep this module cheap

    return model.model_validate(yaml.safe_load(Path(path).read_text()))
