"""`Society.spec`: what a user asks for.

Defaults are the paper's (PAPER.md) where it gives one; LoRA is this project's cheaper default.
Only `model.name` and `task.name` are required, so a four-line spec is a whole experiment.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from society_trainer.config import VLLM_LORA_RANKS

from .base import CEL_VALIDATIONS, ApiModel, Rule, immutable
from .kube import DnsLabel, DnsSubdomain, Quantity, ResourceRequirements, SecretKeyRef, Toleration
from .strings import (
    MODEL_NAME_PATTERN,
    PROMPT_PLACEHOLDERS,
    REVISION_PATTERN,
    SOURCE_PATTERN,
    no_dot_dot,
    prompt_rules,
)

PromptText = Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class ModelSpec(ApiModel):
    """The base model every agent starts from."""

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=512, pattern=MODEL_NAME_PATTERN)
    ] = Field(json_schema_extra=immutable("spec.model.name"))
    """A Hugging Face model id (e.g. microsoft/Phi-3-mini-4k-instruct), an absolute path to a
    model directory on the artifact volume (/models/phi3 is /artifacts/models/phi3 in the pods),
    or a tiny model that ships with the trainer, for CPU runs: builtin:tiny-equations (task
    tiny-equations, examples/tiny.yaml) or builtin:tiny-arithmetic (task arithmetic). A name
    that cannot be found is an error, never substituted."""
    revision: Annotated[
        str, StringConstraints(min_length=1, max_length=256, pattern=REVISION_PATTERN)
    ] = Field("main", json_schema_extra=immutable("spec.model.revision"))
    """Git revision (branch, tag or commit) of a Hugging Face model, which the servers, the
    training steps and `society run` all load; pin a commit for reproducible runs. Ignored for
    a directory or a builtin model."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights and compute dtype for serving and training; auto takes the model config's
    torch_dtype (bfloat16 on A100 and H100 is the usual choice)."""
    hfTokenSecretRef: SecretKeyRef | None = None
    """Secret holding a Hugging Face token, for gated or private models. Mounted as a file in the
    pods that download weights (HF_TOKEN_PATH points at it), never an environment variable."""

    rules = (no_dot_dot("name", "name"),)


class PromptTemplates(ApiModel):
    """Overrides for the task's prompt templates (Python str.format fields). Unset fields keep the
    task's own template, which follows the paper's structure. A placeholder is written as is,
    e.g. {question}; a literal brace is doubled ({{ or }})."""

    generation: PromptText | None = None
    """Round-1 prompt for generation agents; gets {question}."""
    critic: PromptText | None = None
    """Round m > 1 prompt for critic agents, continuing the agent's own conversation; gets
    {others} (the summary of the other agents' answers, or the answers themselves without
    summarisation), and may use {question} and {own_answer}."""
    summarizer: PromptText | None = None
    """Prompt for the summariser call; gets {responses}, and may use {question}."""

    rules = tuple(rule for field in PROMPT_PLACEHOLDERS for rule in prompt_rules(field))


class TaskSpec(ApiModel):
    """The problems the society debates, and how answers are parsed and graded."""

    name: Literal["arithmetic", "gsm8k", "math", "mmlu", "custom", "tiny-equations"]
    """arithmetic: generated a+b*c+d-e*f problems (values 0..29, or 0..maxValue); gsm8k, math,
    mmlu: the public benchmarks; custom: a JSONL file of {question, answer} records named by
    source; tiny-equations: generated equations ax+b=c with x in 0..9, whose answers are checked
    by substitution, in the words builtin:tiny-equations was taught (docs/method.md)."""
    source: (
        Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=SOURCE_PATTERN)]
        | None
    ) = None
    """Where the problems come from: a Hugging Face dataset id (owner/name, or owner/name:config),
    or an absolute path on the artifact volume to a .jsonl, .json or .parquet file or a directory
    of them (/datasets/q.jsonl is /artifacts/datasets/q.jsonl in the pods, and
    <artifacts>/datasets/q.jsonl under `society run --artifacts`). Defaults to the benchmark's
    public dataset; required for custom; not allowed for arithmetic (it is generated)."""
    trainSize: int = Field(500, ge=1, le=1_000_000)
    """Problems debated to build each iteration's finetuning data (the paper uses 500)."""
    evalSize: int = Field(500, ge=1, le=1_000_000)
    """Held-out problems debated to measure each iteration's accuracy (the paper uses 500). Never
    overlaps the training problems."""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    """Seed for problem sampling and generation, so that a run can be repeated."""
    prompts: PromptTemplates = Field(default_factory=PromptTemplates)
    """Prompt template overrides."""
    maxValue: int | None = Field(None, ge=1, le=99)
    """arithmetic only: draw every value from 0..maxValue instead of the paper's 0..29, for
    easier problems (9 is the range builtin:tiny-arithmetic was taught)."""
    levels: list[Annotated[int, Field(ge=1, le=5)]] | None = Field(None, min_length=1, max_length=5)
    """math only: the MATH difficulty levels (1, easiest, to 5) that problems are drawn from.
    Unset: 1, 2 and 3, the levels the paper used; [1, 2, 3, 4, 5] is the whole benchmark. A
    record whose level is missing or unreadable is then left out. Not allowed for other tasks:
    they have no levels."""

    rules = (
        Rule(
            cel="self.name != 'custom' || has(self.source)",
            message="source is required when name is custom: the absolute path on the artifact "
            "volume of a JSONL file of "
            "{question, answer} records",
            check=lambda t: t.name != "custom" or t.source is not None,
            field="source",
        ),
        Rule(
            cel="!(self.name in ['arithmetic', 'tiny-equations']) || !has(self.source)",
            message="source is not allowed when name is arithmetic or tiny-equations: its "
            "problems are generated from seed",
            check=lambda t: t.name not in ("arithmetic", "tiny-equations") or t.source is None,
            field="source",
        ),
        Rule(
            cel="self.name == 'arithmetic' || !has(self.maxValue)",
            message="maxValue is only for name arithmetic (the range of its generated values)",
            check=lambda t: t.name == "arithmetic" or t.maxValue is None,
            field="maxValue",
        ),
        Rule(
            cel="self.name == 'math' || !has(self.levels)",
            message="levels is only for name math (the MATH difficulty levels to draw from)",
            check=lambda t: t.name == "math" or t.levels is None,
            field="levels",
        ),
        no_dot_dot("source", "source"),
        Rule(
            cel="!has(self.source) || self.source.startsWith('/') || "
            "!self.source.matches('[.](jsonl|json|parquet)$')",
            message="source names a file: a path on the artifact volume is absolute, e.g. "
            "/datasets/questions.jsonl (anything else is a Hugging Face dataset id)",
            check=lambda t: (
                t.source is None
                or t.source.startswith("/")
                or re.search(r"[.](jsonl|json|parquet)$", t.source) is None
            ),
            field="source",
        ),
    )


class DebateSpec(ApiModel):
    """How the agents debate each problem (the paper: 3 agents, 2 rounds, summarised)."""

    rounds: int = Field(2, ge=1, le=10)
    """Rounds M. Round 1: each generation agent answers; each later round: each critic agent
    revises its answer given the others'. With 1 round there is no critic data."""
    summarize: bool = True
    """Condense the other agents' answers with one summariser call before each critic turn (the
    paper's ablation shows it helps); false passes the answers verbatim."""
    summarizer: Literal["critic", "base"] = "critic"
    """Who summarises the other agents' answers, when summarize is on: critic, each agent's
    own critic model; base, the base model in every iteration, as the authors' code does (with
    full finetuning, one more vLLM server from iteration 1 on)."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Sampling temperature (the paper: 1.0)."""
    topP: float = Field(0.9, gt=0.0, le=1.0)
    """Nucleus sampling probability mass (the paper: 0.9)."""
    maxTokens: int = Field(2048, ge=1, le=131072)
    """Most new tokens per response (the paper: 2048)."""
    concurrency: int = Field(64, ge=1, le=4096)
    """Most requests in flight to the inference servers at once."""


class LoraSpec(ApiModel):
    """LoRA adapter shape (PEFT LoraConfig). Used when finetune.method is lora."""

    r: Literal[VLLM_LORA_RANKS] = 16  # type: ignore[valid-type]
    """Adapter rank; limited to the ranks vLLM can serve."""
    alpha: int = Field(32, ge=1, le=4096)
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter's input during training."""
    targetModules: Annotated[
        str, StringConstraints(pattern=r"^(all-linear|[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*)$")
    ] = "all-linear"
    """all-linear (every linear layer but the output head), or comma-separated module names such
    as q_proj,v_proj."""


class GenerationTraining(ApiModel):
    """Finetuning of the generation agents on their first-round answers."""

    epochs: int = Field(2, ge=1, le=100)
    """Passes over the agent's dataset (the paper: 2)."""
    learningRate: float = Field(5.0e-6, gt=0.0, le=1.0)
    """Peak learning rate in the first finetuning iteration (the paper: 5e-6, for full
    finetuning; LoRA usually wants about 1e-4)."""


class CriticTraining(ApiModel):
    """Finetuning of the critic agents on whole debate exchanges."""

    epochs: int = Field(1, ge=1, le=100)
    """Passes over the agent's dataset (the paper: 1)."""
    learningRate: float = Field(5.0e-7, gt=0.0, le=1.0)
    """Peak learning rate in the first finetuning iteration (the paper: 5e-7, for full
    finetuning; LoRA usually wants about 1e-5)."""
    loss: Literal["finalAnswer", "allAssistantTurns"] = "finalAnswer"
    """Which answers of a critic row (an agent's whole exchange: its first answer, the critic
    prompt, ..., its final answer) the loss covers. finalAnswer: the final answer only, the one
    that agrees with the majority (a corrected row's first answer was wrong); allAssistantTurns:
    every answer, the first included."""
    overlongRows: Literal["drop", "truncate"] = "drop"
    """A critic row longer than maxLength tokens. drop: left out (the step's result counts
    them); truncate: cut to its first maxLength tokens, which may leave only the earlier,
    possibly wrong, answers (with finalAnswer such a row teaches nothing and is left out)."""


class FinetuneSpec(ApiModel):
    """How each agent is finetuned on its own slice of the debate, and for how many iterations."""

    method: Literal["lora", "full"] = Field(
        "lora", json_schema_extra=immutable("spec.finetune.method")
    )
    """lora trains one small adapter per agent, all served by one vLLM server; full trains
    every weight (the paper's setting) and serves one model per agent."""
    iterations: int = Field(2, ge=1, le=100)
    """Finetuning iterations L. Iteration 0 evaluates the base society; each of the L iterations
    then finetunes every agent and evaluates again. May be raised to extend a run, also one that
    Succeeded: the last iteration's training problems are then debated (Job
    <name>-debate-it<L>-train) and the run goes on; activeDeadlineSeconds still counts from its
    first start."""
    lora: LoraSpec = Field(default_factory=LoraSpec)
    """Adapter shape when method is lora."""
    generation: GenerationTraining = Field(default_factory=GenerationTraining)
    """Hyperparameters of the generation agents."""
    critic: CriticTraining = Field(default_factory=CriticTraining)
    """Hyperparameters of the critic agents, and how their rows (whole exchanges) are trained."""
    laterIterationsLearningRate: float = Field(5.0e-7, gt=0.0, le=1.0)
    """Learning rate of every agent from the second finetuning iteration on (the paper: 5e-7)."""
    weightDecay: float = Field(1.0e-3, ge=0.0, le=1.0)
    """AdamW weight decay (the paper: 1e-3)."""
    batchSize: int = Field(1, ge=1, le=1024)
    """Examples per device per optimiser step (the paper: 1)."""
    gradientAccumulationSteps: int = Field(1, ge=1, le=1024)
    """Batches accumulated before each optimiser step."""
    maxLength: int = Field(2048, ge=16, le=131072)
    """Longest tokenised example (the paper: 2048); a longer generation example is truncated,
    a longer critic row dropped or truncated as critic.overlongRows says."""
    warmupRatio: float = Field(0.03, ge=0.0, lt=1.0)
    """Fraction of steps spent warming the learning rate up (the authors' script: 3%)."""
    lrScheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up (the authors' script: cosine)."""
    gradientCheckpointing: bool = True
    """Recompute activations in the backward pass: less memory, about 30% more compute."""
    saveSteps: int = Field(50, ge=1, le=1_000_000)
    """Checkpoint every this many optimiser steps, so a preempted training pod resumes."""
    criticMixWeight: float = Field(0.67, ge=0.0, le=1.0)
    """Share w of each critic dataset drawn from corrected exchanges (first answer wrong, final
    answer right); the rest are exchanges right throughout. The authors' code uses about 2/3."""


class ComputeSpec(ApiModel):
    """Where and on what the pods of one kind run."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    """Container image; unset uses the operator's configured default for this kind of pod."""
    gpus: int = Field(1, ge=0, le=64)
    """GPUs per pod, requested as nvidia.com/gpu."""
    resources: ResourceRequirements | None = None
    """CPU, memory and other resources per pod (GPUs come from gpus)."""
    nodeSelector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict
    )
    """Node labels the pods require, e.g. {cloud.google.com/gke-accelerator: nvidia-h100-80gb}."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the pods tolerate, e.g. the nvidia.com/gpu taint of GPU node pools."""
    priorityClassName: DnsSubdomain | None = None
    """PriorityClass of the pods."""


class InferenceSpec(ComputeSpec):
    """The vLLM servers the agents debate through."""

    tensorParallel: int = Field(1, ge=1, le=64)
    """Tensor-parallel size of each vLLM server (--tensor-parallel-size); at most gpus."""
    extraArgs: list[Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=list, max_length=64
    )
    """Additional vLLM server flags, e.g. --gpu-memory-utilization=0.9 or --max-model-len=8192."""

    rules = (
        Rule(
            cel="self.gpus == 0 ? self.tensorParallel == 1 : self.tensorParallel <= self.gpus",
            message="tensorParallel must be at most gpus (and 1 when gpus is 0)",
            check=lambda s: s.tensorParallel == 1 if s.gpus == 0 else s.tensorParallel <= s.gpus,
            field="tensorParallel",
        ),
    )


class TrainingSpec(ComputeSpec):
    """The per-agent finetuning Jobs. More than one GPU runs under accelerate (FSDP)."""


class StorageSpec(ApiModel):
    """The ReadWriteMany volume that holds models, adapters, transcripts and datasets."""

    claimName: DnsSubdomain | None = Field(
        None, json_schema_extra=immutable("spec.storage.claimName")
    )
    """An existing ReadWriteMany PersistentVolumeClaim to use. Unset: the operator creates one
    named <society>-artifacts."""
    size: Quantity | None = Field(None, json_schema_extra=immutable("spec.storage.size"))
    """Size of the claim the operator creates (default 100Gi)."""
    storageClassName: DnsSubdomain | None = Field(
        None, json_schema_extra=immutable("spec.storage.storageClassName")
    )
    """StorageClass of the claim the operator creates (it must offer ReadWriteMany); unset uses
    the cluster's default class."""
    whenDeleted: Literal["Retain", "Delete"] = "Retain"
    """What happens to a claim the operator created when the Society is deleted: Retain keeps the
    artifacts, Delete removes them with the Society. A claim named by claimName is never deleted."""

    rules = (
        Rule(
            cel="!has(self.claimName) || (!has(self.size) && !has(self.storageClassName))",
            message="claimName names an existing claim, so size and storageClassName (which "
            "describe a claim for the operator to create) must be unset",
            check=lambda s: s.claimName is None or (s.size is None and s.storageClassName is None),
            field="claimName",
        ),
    )


# A transition rule on an optional field only runs when the old and the new object both hold it,
# so `self == oldSelf` on claimName alone lets a manifest drop it (or add it) mid-run. The storage
# object always exists (it has a default), so its rules also pin which of them are set.
_STORAGE_PRESENCE_IMMUTABLE = {
    CEL_VALIDATIONS: [
        {
            "rule": f"has(self.{field}) == has(oldSelf.{field})",
            "message": f"spec.storage.{field} is immutable: it cannot be set or unset once the "
            "Society exists (the artifacts would move); create a new Society instead",
            "fieldPath": f".{field}",
        }
        for field in ("claimName", "size", "storageClassName")
    ]
}


class SocietySpec(ApiModel):
    """A multiagent finetuning run: a society of agents copied from one base model debates a
    task's problems, each agent is finetuned on its own share of the debate, and the loop repeats
    for finetune.iterations iterations."""

    model: ModelSpec
    """The base model."""
    task: TaskSpec = Field(json_schema_extra=immutable("spec.task"))
    """The dataset and its grading."""
    mode: Literal["multiagent", "single-agent", "star"] = Field(
        "multiagent", json_schema_extra=immutable("spec.mode")
    )
    """multiagent: the paper's method, 2N models (a generation and a critic agent per slot), each
    finetuned on its own data. single-agent: the paper's baseline, one model plays every agent
    and is finetuned on all of the debate's data (every agent's generation and critic data,
    pooled); with debate.rounds 1 this is the paper's Majority-FT. star: the STaR baseline, one
    model plays every agent and is finetuned on its own first-round answers that match the
    ground truth (the only mode that uses the reference). For side-by-side comparisons."""
    agents: int = Field(3, ge=1, le=16, json_schema_extra=immutable("spec.agents"))
    """Agents N in the debate (the paper: 3)."""
    debate: DebateSpec = Field(default_factory=DebateSpec)
    """Debate settings."""
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    """Finetuning settings."""
    inference: InferenceSpec = Field(default_factory=InferenceSpec)
    """Pods that serve the agents (vLLM)."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Pods that finetune the agents."""
    queueName: DnsLabel | None = None
    """Kueue LocalQueue for every Job (the label kueue.x-k8s.io/queue-name); unset submits Jobs
    directly."""
    storage: StorageSpec = Field(
        default_factory=StorageSpec, json_schema_extra=_STORAGE_PRESENCE_IMMUTABLE
    )
    """Where artifacts live."""
    suspend: bool = False
    """true scales the servers to zero and starts no new Job; false resumes where it stopped."""
    backoffLimit: int = Field(2, ge=0, le=100)
    """Retries of each Job before the Society fails."""
    activeDeadlineSeconds: int | None = Field(None, ge=1)
    """Wall-clock limit of the whole run, in seconds; past it the Society fails."""
    startupDeadlineSeconds: int = Field(1800, ge=30, le=86400)
    """How long a server may take to become ready, or a pod stay Pending (unschedulable, image
    pull errors), before the Society fails instead of hanging."""
