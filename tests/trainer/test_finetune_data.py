"""Algorithm 1 on hand-built transcripts whose expected datasets are known."""

from __future__ import annotations

import json
import random

import pytest

from society_trainer.evaluation import evaluate, mean_consensus
from society_trainer.finetune_data import (
    build_agent_data,
    mix_critic,
    pooled_data,
    single_agent_data,
    star_data,
    write_agent_data,
)
from society_trainer.tasks import get_task
from society_trainer.transcript import QuestionRecord, Turn
from society_trainer.voting import consensus, majority


def equal(a: str, b: str) -> bool:
    return float(a) == float(b)


def record(qid: str, *rounds: list[str | None], reference: str = "0") -> QuestionRecord:
    """A debate whose round m answers are rounds[m]; responses spell the answers out."""
    turns = [
        [
            Turn(
                agent=n,
                model=f"m{n}",
                prompt=f"{qid} round {m + 1}",
                response=f"says {a}",
                answer=a,
            )
            for n, a in enumerate(answers)
        ]
        for m, answers in enumerate(rounds)
    ]
    return QuestionRecord(
        id=qid,
        question=qid,
        reference=reference,
        rounds=turns,
        majority=majority(rounds[-1], equal),
    )


def test_majority_ignores_unparseable_answers_and_spells_the_verdict_as_its_first_agent():
    assert majority(["1", "2", "2"], equal) == "2"
    assert majority([None, "3", None], equal) == "3"
    assert majority([None, None], equal) is None
    # equivalent spellings count together; the lowest agent's spelling is the verdict
    assert majority(["7.0", "5", "7"], equal) == "7.0"
    assert majority(["5", "7", "7.0"], equal) == "7"


def test_ties_favour_no_agent_and_are_the_same_every_time():
    """Three different answers: each agent's wins about a third of the questions (the lowest
    agent winning every tie would give it all their finetuning data)."""
    questions = [[str(q), str(q + 1000), str(q + 2000)] for q in range(3000)]
    wins = [0, 0, 0]
    for answers in questions:
        verdict = majority(answers, equal)
        assert verdict == majority(list(answers), equal)
        wins[answers.index(verdict)] += 1
    assert all(900 < w < 1100 for w in wins), wins
    assert majority(["1", None, "2", "2", "1"], equal) in ("1", "2")


def test_consensus_is_the_share_agreeing_with_the_verdict():
    assert consensus(["1", "1", "2"], "1", equal) == pytest.approx(2 / 3)
    assert consensus([None, None], None, equal) == 0.0


# Four questions, three agents, two rounds. Final-round majority: q1 "5", q2 "8", q3 "1", q4 none.
RECORDS = [
    record("q1", ["5", "4", "5"], ["5", "5", "5"]),  # agent 1 corrected
    record("q2", ["8", "8", "2"], ["8", "8", "9"]),  # agent 2 wrong throughout
    record("q3", ["3", "1", None], ["1", "1", "1"]),  # agents 0 and 2 corrected
    record("q4", [None, None, None], [None, None, None]),
]


def prompts(rows: list[dict]) -> list[str]:
    return [row["messages"][0]["content"].split(" ")[0] for row in rows]


def test_generation_data_is_first_answers_agreeing_with_the_majority():
    data = build_agent_data(RECORDS, 3, critic_mix_weight=1.0, equal=equal, seed=0)
    assert [prompts(d.generation) for d in data] == [["q1", "q2"], ["q2", "q3"], ["q1"]]
    row = data[0].generation[0]["messages"]
    assert row == [
        {"role": "user", "content": "q1 round 1"},
        {"role": "assistant", "content": "says 5"},
    ]


def test_critic_data_splits_corrected_from_kept_correct():
    data = build_agent_data(RECORDS, 3, critic_mix_weight=1.0, equal=equal, seed=0)
    assert [(d.corrected, d.kept_correct) for d in data] == [(1, 2), (1, 2), (1, 1)]
    # w = 1: corrected exchanges only
    assert [prompts(d.critic) for d in data] == [["q3"], ["q1"], ["q3"]]
    exchange = data[1].critic[0]["messages"]
    assert [m["role"] for m in exchange] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in exchange] == ["q1 round 1", "says 4", "q1 round 2", "says 5"]


def test_critic_mix_weight_zero_keeps_only_kept_correct():
    data = build_agent_data(RECORDS, 3, critic_mix_weight=0.0, equal=equal, seed=0)
    assert [sorted(prompts(d.critic)) for d in data] == [["q1", "q2"], ["q2", "q3"], ["q1"]]


@pytest.mark.parametrize(
    "weight,corrected,kept,expected",
    [
        (2 / 3, 10, 40, 15),  # every corrected one plus half as many kept-correct
        (0.5, 10, 40, 20),
        (2 / 3, 10, 3, 13),  # not enough kept-correct: all of them
        (1.0, 10, 40, 10),
        (0.0, 10, 40, 40),
        (2 / 3, 0, 40, 0),
    ],
)
def test_mix_proportion(weight, corrected, kept, expected):
    rows_c = [{"c": i} for i in range(corrected)]
    rows_k = [{"k": i} for i in range(kept)]
    mixed = mix_critic(rows_c, rows_k, weight, random.Random(0))
    assert len(mixed) == expected
    if weight > 0:
        assert mixed[:corrected] == rows_c  # every corrected exchange is kept


def test_mix_is_seeded():
    rows_k = [{"k": i} for i in range(50)]
    a = mix_critic([{"c": 0}] * 10, rows_k, 0.5, random.Random(1))
    b = mix_critic([{"c": 0}] * 10, rows_k, 0.5, random.Random(1))
    c = mix_critic([{"c": 0}] * 10, rows_k, 0.5, random.Random(2))
    assert a == b and a != c


def test_data_never_reads_the_reference():
    relabelled = [r.model_copy(update={"reference": "12345"}) for r in RECORDS]
    a = build_agent_data(RECORDS, 3, 0.67, equal, seed=0)
    b = build_agent_data(relabelled, 3, 0.67, equal, seed=0)
    assert [(x.generation, x.critic) for x in a] == [(y.generation, y.critic) for y in b]


def test_single_round_debates_have_no_critic_data():
    one_round = [record("q1", ["5", "5", "4"])]
    data = build_agent_data(one_round, 3, 0.67, equal, seed=0)
    assert [len(d.generation) for d in data] == [1, 1, 0]
    assert all(d.critic == [] for d in data)


def test_single_agent_mode_pools_generation_data(tmp_path):
    data = build_agent_data(RECORDS, 3, 0.67, equal, seed=0)
    pooled = pooled_data(data)
    assert sorted(prompts(pooled.generation)) == ["q1", "q1", "q2", "q2", "q3"]
    sizes = write_agent_data(tmp_path, [pooled], with_critic=False)
    assert sizes == [{"agent": 0, "role": "generation", "examples": 5}]
    assert not (tmp_path / "agent-1").exists()


def test_single_agent_mode_trains_on_all_of_the_debates_data(tmp_path):
    """Generation rows and critic exchanges alike, as docs/method.md says."""
    data = build_agent_data(RECORDS, 3, 1.0, equal, seed=0)
    (one,) = [single_agent_data(data)]
    assert one.critic == []
    rows = one.generation
    assert len(rows) == 5 + 3  # every agreeing first answer, every corrected exchange
    assert sorted(len(row["messages"]) for row in rows) == [2] * 5 + [4] * 3
    sizes = write_agent_data(tmp_path, [one], with_critic=False)
    assert sizes == [{"agent": 0, "role": "generation", "examples": 8}]


def test_star_mode_trains_on_first_answers_the_reference_grades_right(tmp_path):
    """STaR reads the ground truth, not the verdict: q2's majority "8" is wrong (its reference is
    "2"), so agent 2's minority answer is the one taught; q4's unparseable answers never are."""
    graded = [
        r.model_copy(update={"reference": ref}) for r, ref in zip(RECORDS, "5213", strict=True)
    ]
    one = star_data(graded, 3, lambda pred, ref: pred is not None and equal(pred, ref))
    assert (one.agent, one.critic) == (0, [])
    assert sorted(prompts(one.generation)) == ["q1", "q1", "q2", "q3"]
    assert {len(row["messages"]) for row in one.generation} == {2}  # first-round answers only
    contents = sorted(row["messages"][1]["content"] for row in one.generation)
    assert contents == ["says 1", "says 2", "says 5", "says 5"]
    sizes = write_agent_data(tmp_path, [one], with_critic=False)
    assert sizes == [{"agent": 0, "role": "generation", "examples": 4}]


def test_written_datasets_are_trl_conversations(tmp_path):
    data = build_agent_data(RECORDS, 3, 1.0, equal, seed=0)
    sizes = write_agent_data(tmp_path, data, with_critic=True)
    assert sizes[:2] == [
        {"agent": 0, "role": "generation", "examples": 2},
        {"agent": 0, "role": "critic", "examples": 1},
    ]
    lines = (tmp_path / "agent-1" / "critic.jsonl").read_text().splitlines()
    assert [json.loads(line)["messages"][-1]["content"] for line in lines] == ["says 5"]


def test_consensus_counts_only_answers_that_parse():
    """An unparseable answer is no vote in the majority, so no disagreement either."""
    assert consensus(["1", None, None], "1", equal) == 1.0
    assert consensus(["1", "2", None], "1", equal) == pytest.approx(1 / 2)


def test_evaluation_consensus_leaves_out_questions_without_a_verdict():
    records = [
        record("q1", ["5", "5", None], reference="5"),  # both answers agree: 1
        record("q2", ["8", "2", "2"], reference="2"),  # 2 of 3
        record("q3", [None, None, None], reference="1"),  # nothing to agree on
    ]
    assert mean_consensus(records, equal) == pytest.approx((1 + 2 / 3) / 2)
    evaluation = evaluate(records, get_task("arithmetic"), embedding_model=None)
    assert evaluation.consensus == pytest.approx((1 + 2 / 3) / 2)
    assert evaluation.correct == 2 and evaluation.questions == 3
