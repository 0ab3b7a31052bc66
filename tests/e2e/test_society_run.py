"""`society run` end to end: the whole method for one iteration (three agents, two rounds, the
summariser, critic agents answering round 2, both roles' finetuning steps), the real
`society-trainer` steps in subprocesses, on the built-in model the demo runs
(builtin:tiny-equations: what it scores has its own test, tests/trainer/test_tiny_equations.py)
and a few problems, so that it takes a minute. Checks the table and every artifact the loop
leaves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DIVERSITY_METHODS = ("embedding:sentence-transformers/all-MiniLM-L6-v2", "lexical")

SOCIETY = """\
apiVersion: society.dev/v1alpha1
kind: Society
metadata: {name: e2e}
spec:
  model: {name: builtin:tiny-equations, dtype: float32}
  task: {name: tiny-equations, trainSize: 6, evalSize: 6, seed: 3}
  agents: 3
  debate:
    {rounds: 2, summarize: true, temperature: 1.0, topP: 0.9, maxTokens: 160, concurrency: 18}
  finetune:
    iterations: 1
    lora: {r: 8, alpha: 16, dropout: 0.0}
    generation: {epochs: 1, learningRate: 1.0e-3}
    critic: {epochs: 1, learningRate: 1.0e-3}
    maxLength: 512
    gradientCheckpointing: false
  inference: {gpus: 0}
  training: {gpus: 0}
"""


def society(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "society"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    manifest = root / "society.yaml"
    manifest.write_text(SOCIETY)
    artifacts = root / "runs"
    return society("run", str(manifest), "--artifacts", str(artifacts)), manifest, artifacts


def test_run_succeeds_with_a_row_per_iteration(finished):
    ran, _, _ = finished
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.strip().splitlines()
    assert lines[0].split() == [
        "iteration",
        "accuracy",
        "%",
        "consensus",
        "diversity",
        "generation",
        "data",
        "critic",
        "data",
        "time",
    ]
    row = r"(\d+)\s+(\d+\.\d) ± (\d+\.\d)\s+([01]\.\d{3})\s+(\d\.\d{3})\s+(.+?)\s+(\d+m)?\d+s$"
    rows = [re.match(row, line) for line in lines[1:3]]
    assert all(rows), lines
    assert [m.group(1) for m in rows] == ["0", "1"]
    generation, critic = rows[0].group(6).split()[:3], rows[0].group(6).split()[3:]
    assert len(generation) == 3 and len(critic) == 3  # per agent, both roles
    assert rows[1].group(6).split() == ["-", "-"]  # the last iteration only evaluates
    # the packaged encoder where it is installed (the dev extra), else lexical
    assert lines[3] in {f"diversity: {m} (see docs/method.md)" for m in DIVERSITY_METHODS}
    assert "e2e: Succeeded" in ran.stderr
    assert "e2e-debate-it0" in ran.stderr and "e2e-train-critic-1-it1" in ran.stderr


def test_run_leaves_the_operators_artifact_layout(finished):
    _, _, artifacts = finished
    root = artifacts / "e2e"
    for split in ("eval", "train"):
        transcript = root / "iterations" / "0" / "debate" / split / "transcript.jsonl"
        records = [json.loads(line) for line in transcript.read_text().splitlines()]
        assert len(records) == 6
        for record in records:  # round 1 by the generation agents, round 2 by the critics
            first, second = record["rounds"]
            assert [turn["agent"] for turn in second] == [0, 1, 2]
            assert all(turn["summary"] is None for turn in first)
            assert all(turn["summary"] and turn["summary"] in turn["prompt"] for turn in second)
    assert not (root / "iterations" / "1" / "debate" / "train").exists()
    later = (root / "iterations/1/debate/eval/transcript.jsonl").read_text().splitlines()
    assert len(later) == 6
    for record in map(json.loads, later):  # each agent's own finetuned models, by role
        first, second = record["rounds"]
        assert [turn["model"] for turn in first] == [f"gen-{n}-it1" for n in range(3)]
        assert [turn["model"] for turn in second] == [f"critic-{n}-it1" for n in range(3)]
    for agent in (0, 1, 2):
        data = root / "iterations" / "0" / "debate" / "data" / f"agent-{agent}"
        assert (data / "generation.jsonl").exists() and (data / "critic.jsonl").exists()
        for role in ("gen", "critic"):
            adapter = root / "models" / f"{role}-{agent}-it1"
            assert (adapter / "adapter_config.json").exists()
            assert (adapter / "adapter_model.safetensors").exists()
    stored = json.loads((root / "society.json").read_text())
    status = stored["status"]
    assert status["phase"] == "Succeeded" and status["iteration"] == 1
    assert [entry["iteration"] for entry in status["iterations"]] == [0, 1]
    assert all(entry["evalQuestions"] == 6 for entry in status["iterations"])
    jobs = json.loads((root / "jobs.json").read_text())
    assert len(jobs) == 2 + 6 and all(job["phase"] == "succeeded" for job in jobs.values())
    summary = json.loads((root / "jobs" / "e2e-debate-it0" / "termination-log").read_text())
    assert summary["eval"]["accuracy"] == status["iterations"][0]["accuracy"]


def test_rerunning_a_finished_run_reports_it_again_without_running_steps(finished):
    ran, manifest, artifacts = finished
    jobs = (artifacts / "e2e" / "jobs.json").read_text()
    again = society("run", str(manifest), "--artifacts", str(artifacts))
    assert again.returncode == 0, again.stderr
    assert again.stdout == ran.stdout
    assert (artifacts / "e2e" / "jobs.json").read_text() == jobs


def test_run_with_plot_prints_majority_against_debate_and_plots_the_run(finished):
    """make demo's `society run --plot` (here on the finished run, which it reports again): a
    row per iteration of the round-1 vote against the debate's verdict, and a PNG of accuracy,
    consensus and diversity."""
    first, manifest, artifacts = finished
    pytest.importorskip("matplotlib")
    png = artifacts / "e2e" / "e2e.png"
    ran = society("run", str(manifest), "--artifacts", str(artifacts), "--plot", str(png))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(first.stdout)  # the iteration table, then the vote's
    lines = ran.stdout[len(first.stdout) :].strip().splitlines()
    assert lines[0].split()[:2] == ["iteration", "majority"]
    row = r"(\d)\s+(\d+\.\d) ± (\d+\.\d)\s+(\d+\.\d) ± (\d+\.\d)\s+[-+]\d+\.\d"
    assert [re.match(row, line).group(1) for line in lines[1:]] == ["0", "1"]
    status = json.loads((artifacts / "e2e" / "society.json").read_text())["status"]
    debate = [float(re.match(row, line).group(4)) for line in lines[1:]]
    assert debate == [round(100 * e["accuracy"], 1) for e in status["iterations"]]
    assert f"plot: {png}" in ran.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
