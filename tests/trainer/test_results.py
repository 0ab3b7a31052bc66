"""What steps report (results.py): the wire format round-trips, anything else is one clear
line, and the debate's message fits the kubelet's limit however many agents there are."""

from __future__ import annotations

import json

import pytest

from society_trainer.results import (
    TERMINATION_MESSAGE_LIMIT,
    DebateResult,
    FinetuneResult,
    ResultError,
    StepError,
    read_result,
)


def debate_summary(agents: int = 16) -> dict:
    return {
        "step": "debate",
        "iteration": 12,
        "mode": "multiagent",
        "seconds": 123456.789,
        "eval": {
            "questions": 500,
            "correct": 250,
            "accuracy": 0.512345,
            "accuracyStderr": 0.022,
            "consensus": 0.812345,
            "diversity": 0.123456,
            "diversityMethod": "embedding:all-MiniLM-L6-v2",
        },
        "datasets": [
            {"agent": n, "role": role, "examples": 100000}
            for n in range(agents)
            for role in ("generation", "critic")
        ],
        "train": {
            "questions": 500,
            "withMajority": 499,
            "consensus": 0.7,
            "corrected": [100] * agents,
            "keptCorrect": [400] * agents,
        },
    }


FINETUNE = {
    "step": "finetune",
    "iteration": 2,
    "agent": 1,
    "role": "critic",
    "method": "lora",
    "examples": 40,
    "carriedForward": False,
    "resumedFrom": "checkpoint-20",
    "steps": 40,
    "trainLoss": 1.25,
    "firstLoss": 2.5,
    "finalLoss": 0.75,
    "tokens": 12000,
    "trainSeconds": 12.5,
    "tokensPerSecond": 960.0,
    "seconds": 20.125,
    "peakMemoryBytes": 123456789,
}


def test_a_debate_result_round_trips_in_the_wire_format():
    summary = debate_summary(agents=3)
    result = DebateResult.model_validate(summary)
    message = result.termination_message()
    assert json.loads(message) == summary  # same keys, camelCase, nothing added
    assert ": " not in message and ", " not in message  # compact
    assert read_result(message, DebateResult) == result


def test_an_evaluation_only_debate_reports_no_train_split():
    summary = {k: v for k, v in debate_summary(agents=3).items() if k not in ("train", "datasets")}
    message = DebateResult.model_validate(summary).termination_message()
    assert json.loads(message) == summary


def test_a_finetune_result_round_trips_in_the_wire_format():
    result = FinetuneResult.model_validate(FINETUNE)
    message = result.termination_message()
    assert json.loads(message) == FINETUNE
    assert read_result(message, FinetuneResult) == result
    carried = FinetuneResult(
        iteration=1, agent=0, role="generation", examples=0, carriedForward=True, note="n"
    )
    assert read_result(carried.termination_message(), FinetuneResult) == carried


def test_a_step_error_round_trips_and_is_cut_to_fit():
    error = StepError(error="GenerationError: model 'critic-2-it0' answered HTTP 404")
    assert read_result(error.termination_message(), DebateResult) == error
    long = StepError(error="x" * 10_000).termination_message()
    assert len(long.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert read_result(long, FinetuneResult).error == "x" * 3800


def test_keys_a_newer_trainer_adds_are_kept():
    result = read_result(json.dumps({**FINETUNE, "gpuHours": 0.5}), FinetuneResult)
    assert isinstance(result, FinetuneResult) and result.model_extra == {"gpuHours": 0.5}


@pytest.mark.parametrize(
    "message,kind,words",
    [
        (
            "Traceback (most recent call last):\n  File x\nOSError: disk full\n",
            FinetuneResult,
            "not JSON",
        ),
        ('{"step":"debate","iteration":1,"eval":{"questi', DebateResult, "not JSON"),
        ("", DebateResult, "not JSON"),
        ("[1, 2]", DebateResult, "the message"),
        ('{"step": "evaluate", "iteration": 1}', DebateResult, "step"),
        (json.dumps(FINETUNE), DebateResult, "step"),
        (
            '{"step": "finetune", "iteration": 1, "agent": 0, "role": "critic"}',
            FinetuneResult,
            "examples",
        ),
        (
            '{"step": "debate", "iteration": 0, "eval": {"questions": 5}}',
            DebateResult,
            "eval.accuracy",
        ),
    ],
)
def test_anything_else_is_a_result_error_in_one_line(message, kind, words):
    with pytest.raises(ResultError) as raised:
        read_result(message, kind)
    text = str(raised.value)
    assert words in text and "\n" not in text


def test_the_debate_message_fits_for_sixteen_agents():
    summary = debate_summary(agents=16)
    message = DebateResult.model_validate(summary).termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert json.loads(message)["datasets"][-1] == {
        "agent": 15,
        "role": "critic",
        "examples": 100000,
    }
    summary["datasets"] *= 4  # beyond the limit: sizes are left to summary.json
    trimmed = json.loads(DebateResult.model_validate(summary).termination_message())
    assert trimmed["truncated"] is True and trimmed["eval"]["accuracy"] == 0.512345


def test_with_many_agents_the_trimmed_message_stays_under_the_limit():
    result = DebateResult.model_validate(debate_summary(agents=100))
    message = result.termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    trimmed = read_result(message, DebateResult)
    assert trimmed.truncated is True and trimmed.datasets is None
    assert trimmed.train.corrected == [100] * 100 and trimmed.eval == result.eval
