"""`society-trainer analyse`: Table 1's readings of one eval debate, and likelihood diversity
under the agents' own models (a tiny random model and a random LoRA adapter)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from society_trainer.cli import main
from society_trainer.config import AnalysisConfig
from society_trainer.transcript import QuestionRecord, Turn

pytestmark = pytest.mark.slow


def turn(agent: int, answer: str, round_: int = 1) -> Turn:
    return Turn(
        agent=agent,
        model=f"m{agent}",
        prompt=f"What is 1+{answer}*1+0-0*0? round {round_}",
        response=f"1*{answer}={answer}, so {answer}.",
        answer=answer,
    )


def record(qid: str, reference: str, first: list[str], final: list[str]) -> QuestionRecord:
    rounds = [
        [turn(n, a) for n, a in enumerate(first)],
        [turn(n, a, 2) for n, a in enumerate(final)],
    ]
    return QuestionRecord(
        id=qid, question=qid, reference=reference, rounds=rounds, majority=final[0]
    )


# Agent 0 alone: right on q1 only. Round-1 majority: right on q1 and q2. Verdict: right on all.
RECORDS = [
    record("q1", "5", ["5", "5", "4"], ["5", "5", "5"]),
    record("q2", "7", ["6", "7", "7"], ["7", "7", "7"]),
    record("q3", "9", ["1", "2", "3"], ["9", "9", "2"]),
]


def write_config(tmp_path, model_dir, adapters: list, **overrides) -> AnalysisConfig:
    debate_dir = tmp_path / "debate"
    (debate_dir / "eval").mkdir(parents=True)
    lines = [r.model_dump_json() for r in RECORDS]
    (debate_dir / "eval" / "transcript.jsonl").write_text("\n".join(lines) + "\n")
    agents = [
        {"generation": {"name": f"g{n}", "path": path}, "critic": {"name": f"c{n}", "path": path}}
        for n, path in enumerate(adapters)
    ]
    config = {
        "debate": {
            "iteration": 1,
            "task": {"name": "arithmetic", "train_size": 3, "eval_size": 3},
            "agents": agents,
            "rounds": 2,
            "backend": {"kind": "transformers", "base_model": str(model_dir), "dtype": "float32"},
            "splits": ["eval"],
            "output_dir": str(debate_dir),
        },
        "output": str(tmp_path / "analysis.json"),
        **overrides,
    }
    (tmp_path / "analysis.yaml").write_text(json.dumps(config))
    return AnalysisConfig.model_validate(config)


def run(tmp_path) -> dict:
    result = CliRunner().invoke(main, ["analyse", "--config", str(tmp_path / "analysis.yaml")])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "analysis.json").read_text())


def test_the_three_readings_of_one_debate(tmp_path, tiny_model_dir):
    write_config(tmp_path, tiny_model_dir, [None, None, None], likelihood_questions=0)
    found = run(tmp_path)
    assert [found[r]["correct"] for r in ("alone", "first", "final")] == [1, 2, 3]
    assert found["alone"]["consensus"] == 1.0 and found["alone"]["diversity"] is None
    assert found["first"]["consensus"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    assert found["final"]["consensus"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert found["first"]["diversityMethod"] == "lexical"
    assert found["likelihood"]["likelihood"] is None  # nothing scored


def test_likelihood_diversity_scores_each_agents_answers_under_the_others_models(
    tmp_path, tiny_model_dir, tiny_adapter_dir
):
    """One model for all agents: cross and self NLL come from the same scores; an agent with
    its own (different) adapter makes the matrix's rows differ."""
    write_config(tmp_path / "same", tiny_model_dir, [None, None, None])
    same = run(tmp_path / "same")["likelihood"]
    matrix = same["likelihoodMatrix"]
    assert matrix[0] == matrix[1] == matrix[2] and len(matrix[0]) == 3
    assert same["likelihood"] > 0 and same["likelihoodQuestions"] == 3
    write_config(tmp_path / "apart", tiny_model_dir, [None, str(tiny_adapter_dir), None])
    apart = run(tmp_path / "apart")["likelihood"]["likelihoodMatrix"]
    assert apart[0] == pytest.approx(matrix[0]) and apart[2] == pytest.approx(matrix[2])
    assert apart[1] != pytest.approx(matrix[1])
