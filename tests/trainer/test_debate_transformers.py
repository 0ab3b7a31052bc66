"""A whole debate step through the in-process transformers generator, on the tiny local model:
the path `society run` takes on a machine without a GPU or a vLLM server."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from society_trainer.cli import main

pytestmark = pytest.mark.slow


def test_debate_step_with_base_and_adapter_agents(tmp_path, tiny_model_dir, tiny_adapter_dir):
    base = {"name": "base"}
    adapter = {"name": "gen-1-it1", "path": str(tiny_adapter_dir)}
    config = {
        "iteration": 1,
        "task": {"name": "arithmetic", "train_size": 6, "eval_size": 4, "seed": 0},
        "agents": [
            {"generation": base, "critic": base},
            {"generation": adapter, "critic": base},
        ],
        "rounds": 2,
        "summarize": False,
        "sampling": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 8},
        "backend": {"kind": "transformers", "base_model": str(tiny_model_dir), "batch_size": 8},
        "output_dir": str(tmp_path / "out"),
    }
    (tmp_path / "debate.yaml").write_text(yaml.safe_dump(config))

    result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output

    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["questions"] == 4 and 0.0 <= summary["eval"]["accuracy"] <= 1.0
    assert {(d["agent"], d["role"]) for d in summary["datasets"]} == {
        (0, "generation"),
        (0, "critic"),
        (1, "generation"),
        (1, "critic"),
    }
    records = [json.loads(line) for line in (out / "train" / "transcript.jsonl").open()]
    assert len(records) == 6
    for record in records:
        assert [[t["model"] for t in r] for r in record["rounds"]] == [
            ["base", "gen-1-it1"],
            ["base", "base"],
        ]
        assert all(isinstance(t["response"], str) for r in record["rounds"] for t in r)
