"""`society-trainer finetune` on CPU with the tiny local Llama: LoRA and full, continuing from a
previous adapter, resuming after a kill, empty and corrupt data, and vLLM-loadable outputs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from society_trainer.cli import main
from society_trainer.config import (
    BaseModelConfig,
    FinetuneConfig,
    ModelRef,
    SamplingConfig,
    TrainingConfig,
    TransformersBackend,
)
from society_trainer.finetune import (
    SUMMARY_FILE,
    DatasetFormatError,
    read_conversations,
    run_finetune,
)
from society_trainer.generation import CompletionRequest
from society_trainer.launch import accelerate_config, launch_command
from society_trainer.results import CONFIG_ERROR_EXIT_CODE, FinetuneResult, read_result

pytestmark = pytest.mark.slow


def write_dataset(path: Path, n: int, fixed: bool = False) -> Path:
    """Single-digit sums; `fixed` repeats one fact, which a tiny model learns within steps."""
    rows = []
    for i in range(n):
        a, b = (2, 3) if fixed else (i % 10, (3 * i) % 10)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"{a}+{b}?"},
                    {"role": "assistant", "content": str(a + b)},
                ]
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_config(tmp_path: Path, model: Path, lora: dict | None = None, **fields) -> FinetuneConfig:
    """The tests' step config; each of `fields` goes to the part that declares it, and `lora`
    overrides the adapter's settings."""
    step = dict(
        iteration=1,
        agent=0,
        role="generation",
        dataset=tmp_path / "data.jsonl",
        output_dir=tmp_path / "out" / "gen-0-it1",
        method="lora",
    )
    base = dict(base_model=str(model), dtype="float32")
    training = dict(
        epochs=2,
        learning_rate=1e-2,
        batch_size=4,
        max_length=64,
        save_steps=50,
        gradient_checkpointing=False,
    )
    for name, value in fields.items():
        if name in BaseModelConfig.model_fields:
            base[name] = value
        elif name in TrainingConfig.model_fields:
            training[name] = value
        else:
            step[name] = value
    if step["method"] == "lora":
        step["lora"] = {"r": 8, "alpha": 16, "dropout": 0.0, **(lora or {})}
    return FinetuneConfig(**step, model=base, training=training)


def test_lora_writes_an_adapter_vllm_can_serve_and_learns(tmp_path, tiny_model_dir):
    write_dataset(tmp_path / "data.jsonl", 32, fixed=True)
    config = make_config(tmp_path, tiny_model_dir, learning_rate=5e-2, epochs=4)
    summary = run_finetune(config)

    adapter = config.output_dir
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in adapter.iterdir()
    }
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["r"] == 8 and settings["peft_type"] == "LORA"
    assert summary.steps == 32 and summary.examples == 32 and not summary.carriedForward
    # The random model starts near uniform (loss ln 260 = 5.56); all-linear LoRA leaves the
    # output head alone, so the loss cannot fall far, but the answer below must be learnt.
    assert summary.finalLoss < summary.firstLoss - 0.8
    assert summary.tokens > 0 and summary.tokensPerSecond > 0
    assert summary.peakMemoryBytes > 0
    assert not config.checkpoints.exists()  # cleaned up once the output is in place
    assert not adapter.with_name(adapter.name + ".partial").exists()

    # the adapter loads back with PEFT and generates what it learnt
    from society_trainer.generation.transformers import TransformersGenerator

    generator = TransformersGenerator(TransformersBackend(base_model=tiny_model_dir))

    async def ask() -> str:
        try:
            return await generator.complete(
                CompletionRequest(
                    model=ModelRef(name="gen-0-it1", path=adapter),
                    messages=[{"role": "user", "content": "2+3?"}],
                    sampling=SamplingConfig(temperature=0.0, max_tokens=4),
                    seed=0,
                )
            )
        finally:
            await generator.aclose()

    # it learnt the answer (stopping right after it takes a few more steps than this test runs)
    assert asyncio.run(ask()).startswith("5")


def test_the_same_step_trains_the_same_adapter(tmp_path, tiny_model_dir):
    """Same data, same seed: the same weights, bit for bit, however torch's global RNG stood
    before (LoRA's A matrices are drawn at random when the adapter is made: they once were drawn
    before the seed was set, so reruns of a step differed); another seed, other weights."""
    import torch
    from safetensors.torch import load_file

    write_dataset(tmp_path / "data.jsonl", 8)

    def adapter(name: str, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(len(name))  # whatever ran before in this process
        config = make_config(
            tmp_path, tiny_model_dir, epochs=1, seed=seed, output_dir=tmp_path / "out" / name
        )
        run_finetune(config)
        return load_file(config.output_dir / "adapter_model.safetensors")

    first, again, other = adapter("a", 0), adapter("bb", 0), adapter("ccc", 1)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_next_iteration_continues_from_the_previous_adapter(tmp_path, tiny_model_dir):
    write_dataset(tmp_path / "data.jsonl", 32, fixed=True)
    first = run_finetune(make_config(tmp_path, tiny_model_dir, epochs=1))
    previous = tmp_path / "out" / "gen-0-it1"
    second = run_finetune(
        make_config(
            tmp_path,
            tiny_model_dir,
            iteration=2,
            init_from=previous,
            epochs=1,
            output_dir=tmp_path / "out" / "gen-0-it2",
        )
    )
    # it starts where the first iteration ended, not from the base model
    assert second.firstLoss < first.firstLoss * 0.8
    assert second.finalLoss < first.finalLoss
    assert (tmp_path / "out" / "gen-0-it2" / "adapter_model.safetensors").exists()


def test_full_finetuning_writes_a_model_directory(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_dataset(tmp_path / "data.jsonl", 16)
    config = make_config(tmp_path, tiny_model_dir, method="full", epochs=1, learning_rate=1e-3)
    summary = run_finetune(config)
    assert summary.steps == 4 and summary.method == "full"
    assert AutoModelForCausalLM.from_pretrained(config.output_dir) is not None
    assert AutoTokenizer.from_pretrained(config.output_dir).chat_template


def test_empty_dataset_carries_the_previous_adapter_forward(tmp_path, tiny_model_dir):
    write_dataset(tmp_path / "data.jsonl", 8)
    previous = make_config(tmp_path, tiny_model_dir, epochs=1).output_dir
    run_finetune(make_config(tmp_path, tiny_model_dir, epochs=1))
    (tmp_path / "empty.jsonl").write_text("")
    config = make_config(
        tmp_path,
        tiny_model_dir,
        iteration=2,
        init_from=previous,
        dataset=tmp_path / "empty.jsonl",
        output_dir=tmp_path / "out" / "gen-0-it2",
    )
    summary = run_finetune(config)
    assert summary.carriedForward is True and summary.steps == 0
    assert "carried" in summary.note
    weights = "adapter_model.safetensors"
    assert (config.output_dir / weights).read_bytes() == (previous / weights).read_bytes()
    saved = json.loads((config.output_dir / SUMMARY_FILE).read_text())
    assert saved["iteration"] == 2  # its own summary, not the previous iteration's


def test_empty_dataset_at_the_first_iteration_gives_an_identity_adapter(tmp_path, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    (tmp_path / "empty.jsonl").write_text("\n")
    config = make_config(tmp_path, tiny_model_dir, dataset=tmp_path / "empty.jsonl")
    summary = run_finetune(config)
    assert summary.carriedForward is True and "identity adapter" in summary.note
    tensors = load_file(config.output_dir / "adapter_model.safetensors")
    assert all(torch.count_nonzero(t) == 0 for k, t in tensors.items() if "lora_B" in k)


def test_a_finished_step_is_not_run_twice(tmp_path, tiny_model_dir):
    write_dataset(tmp_path / "data.jsonl", 8)
    config = make_config(
        tmp_path, tiny_model_dir, epochs=1, termination_log=tmp_path / "termination-log"
    )
    first = run_finetune(config)
    (tmp_path / "termination-log").unlink()
    started = time.monotonic()
    again = run_finetune(config)
    assert again == first and time.monotonic() - started < 1.0
    assert read_result((tmp_path / "termination-log").read_text(), FinetuneResult) == first


def test_resume_after_a_kill(tmp_path, tiny_model_dir):
    write_dataset(tmp_path / "data.jsonl", 150)
    config = make_config(
        tmp_path, tiny_model_dir, epochs=1, batch_size=1, save_steps=10, learning_rate=1e-3
    )
    config_file = tmp_path / "ft.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    command = [
        sys.executable,
        "-m",
        "society_trainer.cli",
        "finetune",
        "--config",
        str(config_file),
    ]

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(config.checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, "the step ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not config.output_dir.exists()
    # as if the kill had also torn a checkpoint in half
    (config.checkpoints / "checkpoint-99999").mkdir()

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((config.output_dir / SUMMARY_FILE).read_text())
    assert summary["steps"] == 150
    assert summary["resumedFrom"].startswith("checkpoint-")
    assert int(summary["resumedFrom"].split("-")[1]) >= 10


@pytest.mark.parametrize(
    "line,words",
    [
        ("not json", "data.jsonl:2: not JSON"),
        ('{"text": "hi"}', "data.jsonl:2: expected an object with a 'messages' list"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "data.jsonl:2: messages[0] must be"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "data.jsonl:2: no assistant turn"),
    ],
)
def test_corrupt_dataset_names_file_and_line(tmp_path, line, words):
    path = write_dataset(tmp_path / "data.jsonl", 1)
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DatasetFormatError, match=re.escape(words)):
        read_conversations(path)


def test_cli_reports_a_corrupt_dataset_in_the_termination_message(tmp_path, tiny_model_dir):
    (tmp_path / "data.jsonl").write_text("{oops\n")
    config = make_config(tmp_path, tiny_model_dir, termination_log=tmp_path / "termination-log")
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    result = CliRunner().invoke(main, ["finetune", "--config", str(tmp_path / "ft.yaml")])
    assert result.exit_code == CONFIG_ERROR_EXIT_CODE
    error = json.loads((tmp_path / "termination-log").read_text())["error"]
    assert error.startswith("DatasetFormatError: ") and "data.jsonl:1: not JSON" in error


def test_lora_rank_must_be_one_vllm_serves(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="16, 32"):
        make_config(tmp_path, tiny_model_dir, lora={"r": 12})


def test_multi_gpu_full_finetuning_runs_under_accelerate_with_fsdp(tmp_path, tiny_model_dir):
    from accelerate.commands.config.config_args import ClusterConfig

    config = make_config(tmp_path, tiny_model_dir, method="full", gpus=4, dtype="bfloat16")
    settings = accelerate_config(config)
    assert settings["distributed_type"] == "FSDP" and settings["num_processes"] == 4
    assert settings["mixed_precision"] == "bf16"
    fsdp = settings["fsdp_config"]
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # rank 0 saves a normal model
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(settings))
    parsed = ClusterConfig.from_yaml_file(str(path))  # accelerate itself accepts it
    assert (
        parsed.num_processes == 4 and parsed.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
    )

    lora = accelerate_config(make_config(tmp_path, tiny_model_dir, gpus=2))
    assert lora["distributed_type"] == "MULTI_GPU" and "fsdp_config" not in lora

    command = launch_command(Path("/cfg/ft.yaml"), path, 4)
    assert command[1:] == [
        "launch",
        "--config_file",
        str(path),
        "--num_processes",
        "4",
        "-m",
        "society_trainer.cli",
        "finetune",
        "--config",
        "/cfg/ft.yaml",
    ]


def test_cli_relaunches_itself_under_accelerate_for_several_gpus(
    tmp_path, tiny_model_dir, monkeypatch
):
    config = make_config(tmp_path, tiny_model_dir, method="full", gpus=8)
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    launched = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(os, "execvp", lambda file, args: launched.append(args) or sys.exit(0))
    CliRunner().invoke(main, ["finetune", "--config", str(tmp_path / "ft.yaml")])
    (command,) = launched
    assert command[1:3] == ["launch", "--config_file"] and "--num_processes" in command
    written = yaml.safe_load(Path(command[3]).read_text())
    assert written["distributed_type"] == "FSDP" and written["num_processes"] == 8
