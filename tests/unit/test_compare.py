"""`society compare`: every arm of Table 1, every column, the plot, resuming; the trainer's steps
are fakes (tests/trainer/test_analysis.py runs the real analysis on a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from society_operator import compare as comparing
from society_operator.cli import main
from society_operator.compare import ARMS, arm_society, compare, sized, table
from society_operator.local import runner as local
from society_trainer.config import AnalysisConfig

from .test_local_run import FakeTrainer, society


class FakeAnalysis:
    """Plays `society-trainer analyse`: a reading per view that names its run and iteration."""

    def __init__(self):
        self.analysed: list[tuple[str, int]] = []

    def __call__(self, command, log: Path, poll, threads: int | None = None) -> int:
        config = AnalysisConfig.model_validate_json(Path(command[-1]).read_text())
        debate = config.debate
        self.analysed.append((debate.mode, debate.iteration))
        score = {"multiagent": 3, "single-agent": 2, "star": 1}[debate.mode] + debate.iteration

        def reading(correct: int) -> dict:
            return {
                "questions": 4,
                "correct": min(correct, 4),
                "consensus": 0.5,
                "diversity": 0.1 * correct,
                "diversityMethod": "lexical",
                "likelihood": 1.0 + correct,
            }

        result = {"alone": reading(0), "first": reading(1), "final": reading(score)}
        config.output.write_text(json.dumps(result))
        return 0


@pytest.fixture
def fakes(monkeypatch) -> FakeAnalysis:
    monkeypatch.setattr(local, "run_command", FakeTrainer())
    monkeypatch.setattr(local, "trainer_executable", lambda: "society-trainer")
    analysis = FakeAnalysis()
    monkeypatch.setattr(comparing, "run_command", analysis)
    monkeypatch.setattr(comparing, "trainer_executable", lambda: "society-trainer")
    return analysis


def test_every_arm_and_column(fakes, tmp_path):
    base = society(agents=3, debate={"rounds": 2})
    cells, method = compare(base, [0, 1], 2, tmp_path, say=lambda line: None)
    assert method == "lexical"
    assert list(cells) == [arm.name for arm in ARMS]
    assert [len(cells[a.name]) for a in ARMS] == [1, 1, 1, 3, 3, 3, 3]
    multiagent = cells["Multiagent FT"]
    assert [c.questions for c in multiagent] == [8, 8, 8]  # two seeds pooled
    assert [c.correct for c in multiagent] == [6, 8, 8]
    assert multiagent[0].stderr == pytest.approx((0.75 * 0.25 / 8) ** 0.5)
    assert cells["Debate"] == [multiagent[0]]  # the base society's verdict
    assert (cells["Base"][0].correct, cells["Majority"][0].correct) == (0, 2)
    assert cells["Majority-FT"][2].likelihood == 5.0  # single-agent, one round: 2 + 2 + 1
    # four runs per seed at M = 2, each iteration analysed once
    assert len(fakes.analysed) == 2 * 4 * 3
    lines = table(cells)
    assert lines[0] == (
        "| arm | iterations | accuracy % | consensus | diversity | likelihood diversity |"
    )
    assert lines[2] == "| Base | 0 | 0.0 ± 0.0 | 0.500 | 0.000 | 1.000 |"
    assert lines[8] == "| Multiagent FT | 2 | 100.0 ± 0.0 | 0.500 | 0.500 | 6.000 |"
    assert lines[-3].startswith("| 0 | 25.0 ± 15.3 | 50.0 ± 17.7 | 50.0 ± 17.7 | 75.0 ± 15.3 |")


def test_at_one_round_single_agent_ft_and_majority_ft_are_one_run(fakes, tmp_path):
    base = society(agents=3, debate={"rounds": 1})
    names = {arm_society(base, arm, 0, 1).metadata.name for arm in ARMS}
    assert names == {f"t-e4t4-{mode}-m1-s0" for mode in ("multiagent", "single-agent", "star")}
    cells, _ = compare(base, [0], 1, tmp_path, say=lambda line: None)
    assert cells["Single-agent FT"] == cells["Majority-FT"]
    assert len(fakes.analysed) == 3 * 2


def test_the_command_prints_table_1_and_writes_the_plot(fakes, tmp_path):
    pytest.importorskip("matplotlib")
    manifest = sized(society(agents=2, debate={"rounds": 1}), 9, 9).to_manifest()
    manifest.pop("status", None)
    (tmp_path / "s.yaml").write_text(json.dumps(manifest))
    args = ["compare", str(tmp_path / "s.yaml"), "--seeds", "0,1", "--iterations", "1"]
    args += ["--eval-size", "4", "--train-size", "4"]  # the fake analysis grades 4
    args += ["--artifacts", str(tmp_path / "runs"), "--plot", str(tmp_path / "t1.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = result.stdout  # the table; the steps and the plot's path go to stderr
    assert "N = 2 agents, M = 1 round(s), L = 1, seeds 0 1, 4 eval problems" in out
    assert (tmp_path / "runs" / "t-e4t4-star-m1-s1").is_dir()
    for arm in ARMS:
        assert f"| {arm.name} |" in out
    assert (tmp_path / "t1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = CliRunner().invoke(main, args)  # everything kept: nothing runs twice
    assert again.exit_code == 0 and again.stdout == result.stdout
    assert len(fakes.analysed) == 3 * 2 * 2  # three runs, two iterations, two seeds, once


def test_a_smaller_comparison_reads_the_longer_runs_without_running_them(fakes, tmp_path):
    base = society(agents=2, debate={"rounds": 1})
    compare(base, [0], 2, tmp_path, say=lambda line: None)
    trainer = local.run_command  # the FakeTrainer
    steps = len(trainer.commands)
    cells, _ = compare(base, [0], 1, tmp_path, say=lambda line: None)
    assert len(trainer.commands) == steps  # nothing ran again
    assert [len(cells[a.name]) for a in ARMS] == [1, 1, 1, 2, 2, 2, 2]
