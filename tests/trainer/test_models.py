"""Model names: builtin models are built once and cached; anything that cannot be found is a
clear error, never a substitute."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from society_trainer.models import (
    ModelNotFoundError,
    builtin,
    load_causal_lm,
    resolve_model,
    tiny_arithmetic,
)
from society_trainer.tasks import get_task


def test_an_unknown_builtin_names_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="builtin:tiny-arithmetic") as raised:
        resolve_model("builtin:tiny-arithmetics")
    assert "unknown builtin model 'builtin:tiny-arithmetics'" in str(raised.value)


def test_a_missing_directory_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model directory at"):
        resolve_model(tmp_path / "nothing-here")
    with pytest.raises(ModelNotFoundError, match="no model directory at"):
        load_causal_lm("./nothing-here")


def test_a_directory_and_a_hub_id_pass_through(tmp_path):
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("microsoft/Phi-3-mini-4k-instruct") == "microsoft/Phi-3-mini-4k-instruct"


def test_a_hub_id_loads_at_the_revision_vllm_serves_a_directory_as_it_is(tmp_path, monkeypatch):
    """The Hub cannot be reached here: from_pretrained is replaced by a recorder."""
    import transformers

    from society_trainer.models import load_tokenizer

    calls = []

    def recorder(source, **kwargs):
        calls.append((source, kwargs.get("revision")))

    for auto in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(auto, "from_pretrained", recorder)
    load_tokenizer("org/model", "0123abc")
    load_causal_lm("org/model", "float32", "0123abc")
    load_causal_lm(tmp_path, "float32", "0123abc")
    load_tokenizer("org/model")
    assert calls == [
        ("org/model", "0123abc"),
        ("org/model", "0123abc"),
        (str(tmp_path), None),
        ("org/model", None),
    ]


def test_a_hub_id_that_cannot_be_had_fails_in_one_line(tmp_path):
    trainer = Path(sys.executable).parent / "society-trainer"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    ran = subprocess.run(
        [str(trainer), "model", "no-such-org/no-such-model"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    lines = [line for line in ran.stderr.splitlines() if line.startswith("society-trainer:")]
    assert len(lines) == 1
    assert "model 'no-such-org/no-such-model' is not a builtin model" in lines[0]
    assert "could not be loaded from the Hugging Face Hub" in lines[0]


def test_builtin_is_built_once_even_when_asked_twice_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path))
    builds = []

    def slow_build(path: Path) -> None:
        builds.append(path)
        time.sleep(0.3)
        path.mkdir()
        (path / "config.json").write_text("{}")

    monkeypatch.setitem(builtin.BUILTINS, "slow", ("v9", slow_build))
    found: list[Path] = []
    threads = [
        threading.Thread(target=lambda: found.append(builtin.builtin_model("slow")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert found == [tmp_path / "models" / "slow-v9"] * 2
    assert resolve_model("builtin:slow") == str(tmp_path / "models" / "slow-v9")
    assert len(builds) == 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".slow-v9.lock", "slow-v9"]


def test_a_failed_build_leaves_nothing_that_looks_built(tmp_path, monkeypatch):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path))

    def broken(path: Path) -> None:
        path.mkdir()
        (path / "config.json").write_text("{}")
        raise RuntimeError("killed halfway")

    monkeypatch.setitem(builtin.BUILTINS, "broken", ("v1", broken))
    with pytest.raises(RuntimeError):
        builtin.builtin_model("broken")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".broken-v1.lock"]


def test_the_worked_chain_ends_in_the_tasks_answer():
    task = get_task("arithmetic")
    rng = random.Random(0)
    for _ in range(500):
        values = tuple(rng.randint(0, 29) for _ in range(6))
        answer = str(eval(tiny_arithmetic.expression(values)))  # noqa: S307 (digits and + - *)
        assert task.is_correct(task.parse(tiny_arithmetic.chain(values)), answer)


def test_conversations_teach_only_the_last_answer():
    from society_trainer.models.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()
    examples = tiny_arithmetic._Examples(tokenizer, seed=5)
    kinds = set()
    for _ in range(20):
        ids, labels = examples.conversation()
        taught = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label >= 0])
        assert taught.endswith(".<|im_end|>")
        assert taught.count("=") >= 5 and "<|im_start|>" not in taught
        kinds.add(tokenizer.decode(ids).count("<|im_start|>assistant"))
    assert kinds == {1, 2}  # round-1 answers and critic exchanges


@pytest.mark.slow
def test_the_recipe_builds_a_loadable_chat_model_deterministically(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(tiny_arithmetic, "PACKED_STEPS", 3)
    monkeypatch.setattr(tiny_arithmetic, "CHAT_STEPS", 2)
    first = tiny_arithmetic.build(tmp_path / "a")
    second = tiny_arithmetic.build(tmp_path / "b")
    weights = "model.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    tokenizer = AutoTokenizer.from_pretrained(first)
    assert "generation" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(first)
    assert model.config.num_hidden_layers == tiny_arithmetic.SIZES["layers"]
    assert json.loads((first / "config.json").read_text())["model_type"] == "llama"
