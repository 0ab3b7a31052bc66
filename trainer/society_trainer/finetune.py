"""`society-trainer finetune`: one agent, one role, one iteration, with TRL's SFTTrainer.

- LoRA (PEFT) by default: iteration 1 starts a fresh adapter on the base model; later iterations
  continue the agent's previous adapter. The result is an adapter directory that vLLM serves with
  `--lora-modules name=path` (its rank is one vLLM accepts, see config.VLLM_LORA_RANKS).
- Full finetuning: continues the agent's previous model (or the base); the result is a Hugging
  Face model directory with its tokenizer.
- Loss only on the agent's own answers, as the paper trains: by default on a row's last answer
  (a critic row's final one), or on every assistant turn. Rows are tokenized with the model's
  chat template by training_rows.py, which finds the answers whatever the template (TRL's
  assistant-only loss handles only templates with `{% generation %}` markers); a critic row
  longer than max_length is dropped by default rather than cut to its earlier answers.
- Preemptible: checkpoints every `save_steps` optimiser steps beside the output; a restarted step
  resumes from the newest one. The output is written to a temporary directory and renamed into
  place, so a reader never sees half an adapter, and a step whose output exists is already done.
- An empty dataset (no answer of this agent agreed with the majority, or every row dropped)
  trains nothing: the previous weights are carried forward to the output path and the summary
  says so.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import time
from pathlib import Path

from .config import FinetuneConfig, LoraConfig
from .models import load_causal_lm, load_tokenizer
from .results import FinetuneResult
from .training_rows import Rows, tokenize_rows

log = logging.getLogger(__name__)

SUMMARY_FILE = "society-summary.json"
ROLES = {"user", "assistant", "system"}


class DatasetFormatError(ValueError):
    """A finetuning dataset line that is not a chat conversation; names the file and line."""


def read_conversations(path: Path) -> list[dict]:
    """The dataset's rows, each {"messages": [{"role", "content"}, ...]} with an assistant turn."""
    rows = []
    with Path(path).open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{where}: not JSON ({error.msg})") from None
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list) or not messages:
                raise DatasetFormatError(f"{where}: expected an object with a 'messages' list")
            for i, message in enumerate(messages):
                if (
                    not isinstance(message, dict)
                    or message.get("role") not in ROLES
                    or not isinstance(message.get("content"), str)
                ):
                    raise DatasetFormatError(
                        f"{where}: messages[{i}] must be {{role: user|assistant|system, "
                        "content: string}"
                    )
            if not any(m["role"] == "assistant" for m in messages):
                raise DatasetFormatError(f"{where}: no assistant turn to learn from")
            rows.append(
                {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
            )
    return rows


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _peak_memory_bytes() -> int:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _load_model(config: FinetuneConfig, source: str | Path):
    return load_causal_lm(source, config.model.dtype, config.model.base_model_revision)


def _peft_config(lora: LoraConfig):
    import peft

    targets = lora.target_modules
    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets if targets == "all-linear" else targets.split(","),
        task_type="CAUSAL_LM",
    )


def _trainable_model(config: FinetuneConfig):
    """The model to train: a PEFT model for LoRA (fresh or continued), or a whole model."""
    model = config.model
    if config.method == "full":
        return _load_model(config, model.init_from or model.base_model)
    from peft import PeftModel, get_peft_model

    base = _load_model(config, model.base_model)
    if model.init_from is not None:
        return PeftModel.from_pretrained(base, model.init_from, is_trainable=True)
    return get_peft_model(base, _peft_config(config.lora))


def _link_or_copy(source: str, target: str) -> None:
    """Hard links cost no space on the artifact volume (a 7B model is 15 GB); else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _carry_forward(config: FinetuneConfig, staging: Path, why: str) -> str:
    """Nothing to learn from (`why`): the output is the agent's current weights, unchanged."""
    model = config.model
    if model.init_from is not None:
        shutil.copytree(
            model.init_from,
            staging,
            copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns(SUMMARY_FILE),
        )
        return f"{why}; carried {model.init_from} forward"
    if config.method == "lora":
        # PEFT initialises LoRA's B matrix to zero: a fresh adapter is exactly the base model,
        # and the server still gets an adapter under the agent's name.
        from peft import get_peft_model

        get_peft_model(
            _load_model(config, model.base_model), _peft_config(config.lora)
        ).save_pretrained(staging)
        return f"{why}; wrote an identity adapter (the base model)"
    _load_model(config, model.base_model).save_pretrained(staging)
    load_tokenizer(model.base_model, model.base_model_revision).save_pretrained(staging)
    return f"{why}; wrote the base model"


def _sft_config(config: FinetuneConfig):
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    training = config.training
    return SFTConfig(
        output_dir=str(config.checkpoints),
        num_train_epochs=training.epochs,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        max_length=training.max_length,
        warmup_steps=training.warmup_ratio,  # below 1: a fraction of the steps
        lr_scheduler_type=training.lr_scheduler,
        gradient_checkpointing=training.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(10, training.save_steps)),
        logging_first_step=True,
        bf16=on_gpu and config.model.dtype in ("bfloat16", "auto"),
        use_cpu=not on_gpu,
        seed=training.seed,
        report_to="none",
        disable_tqdm=True,
    )


def _latest_checkpoint(directory: Path) -> str | None:
    """The newest *complete* checkpoint. The Trainer writes a checkpoint in place and its
    trainer_state.json last, so a pod killed mid-save leaves a torn one: it is removed, and the
    step resumes from the one before."""
    if not directory.is_dir():
        return None
    found = sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in directory.glob("checkpoint-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    )
    for _, path in reversed(found):
        if (path / "trainer_state.json").exists():
            return str(path)
        log.warning("%s is incomplete (killed while saving); discarding it", path)
        shutil.rmtree(path)
    return None


def _train(config: FinetuneConfig, tokenizer, rows: Rows, staging: Path) -> dict:
    """Train on `rows` (resuming from the newest checkpoint) and save the weights to `staging`;
    returns the result's fields that describe the training."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTTrainer

    # The Trainer seeds torch only once it is built, after the model: without this, LoRA's A
    # matrices (drawn at random by get_peft_model) differed from run to run, and so did the
    # trained weights, from the first step's gradient on.
    set_seed(config.training.seed)
    trainer = SFTTrainer(
        model=_trainable_model(config),
        args=_sft_config(config),
        train_dataset=Dataset.from_list(rows.rows),  # tokenized, with labels: used as they are
        processing_class=tokenizer,
    )
    resume = _latest_checkpoint(config.checkpoints)
    if resume:
        log.info("resuming from %s", resume)
    trained = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(staging))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * config.training.epochs
    runtime = trained.metrics["train_runtime"]
    return {
        "carriedForward": False,
        "resumedFrom": Path(resume).name if resume else None,
        "steps": trainer.state.global_step,
        "trainLoss": round(trained.training_loss, 6),
        "firstLoss": round(losses[0], 6) if losses else None,
        "finalLoss": round(losses[-1], 6) if losses else None,
        "tokens": tokens,
        "trainSeconds": round(runtime, 3),
        "tokensPerSecond": round(tokens / max(runtime, 1e-9), 1),
    }


def _report(config: FinetuneConfig, result: FinetuneResult) -> None:
    if config.termination_log is not None:
        config.termination_log.write_text(result.termination_message())


def run_finetune(config: FinetuneConfig) -> FinetuneResult:
    output = config.output_dir
    if (output / SUMMARY_FILE).exists():
        # A retried pod of a step that had finished: report the result again, train nothing.
        log.info("%s already holds this step's result; nothing to do", output)
        result = FinetuneResult.model_validate_json((output / SUMMARY_FILE).read_text())
        _report(config, result)
        return result

    started = time.monotonic()
    conversations = read_conversations(config.dataset)
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = Rows([], 0)
    if conversations:
        tokenizer = load_tokenizer(config.model.base_model, config.model.base_model_revision)
        training = config.training
        rows = tokenize_rows(
            tokenizer,
            conversations,
            training.loss_on,
            training.max_length,
            training.overlong_exchanges,
        )
        if rows.dropped:
            log.info("%d of %d rows left out (too long)", rows.dropped, len(conversations))
    if rows.rows:
        outcome = _train(config, tokenizer, rows, staging)
    else:
        why = "no training examples"
        if conversations:
            why = f"all {len(conversations)} rows too long for max_length {training.max_length}"
        outcome = {"carriedForward": True, "note": _carry_forward(config, staging, why), "steps": 0}
    result = FinetuneResult(
        iteration=config.iteration,
        agent=config.agent,
        role=config.role,
        method=config.method,
        examples=len(conversations),
        droppedRows=rows.dropped,
        **outcome,
        seconds=round(time.monotonic() - started, 3),
        peakMemoryBytes=_peak_memory_bytes(),
    )
    if _is_main_process():
        text = result.model_dump_json(indent=2, exclude_none=True)
        (staging / SUMMARY_FILE).write_text(text + "\n")
        shutil.rmtree(output, ignore_errors=True)  # an unfinished output from an older attempt
        staging.rename(output)
        shutil.rmtree(config.checkpoints, ignore_errors=True)
        _report(config, result)
    return result
