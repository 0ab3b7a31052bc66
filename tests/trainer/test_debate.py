"""The debate engine: who is asked what, in which order, and resuming after a kill."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re

import pytest

from society_trainer.config import AgentModels, ModelRef, SamplingConfig
from society_trainer.debate import Debate, DebateSetup, request_seed
from society_trainer.tasks import get_task
from society_trainer.transcript import read_transcript

from .scripted import ScriptedGenerator

TASK = get_task("arithmetic")
AGENTS = [
    AgentModels(generation=ModelRef(name=f"gen-{n}-it1"), critic=ModelRef(name=f"critic-{n}-it1"))
    for n in range(3)
]


def truth(question: str) -> int:
    return eval(re.search(r"[\d+*\-]+(?=\?)", question).group())  # the generator's own problems


def respond(request) -> str:
    """Agent 0 answers right, agent 1 off by one, agent 2 right; critics echo the majority; the
    summariser summarises."""
    name = request.model.name
    text = request.messages[-1]["content"]
    if "Summarise" in text:
        return "summary: most agents agree"
    question = request.messages[0]["content"]
    value = truth(question)
    if name.startswith("gen-1"):
        value += 1
    return f"The answer is {value}."


def setup(rounds=2, summarize=True, summarizer=None) -> DebateSetup:
    return DebateSetup(
        task=TASK,
        prompts=TASK.prompts,
        agents=AGENTS,
        rounds=rounds,
        summarize=summarize,
        sampling=SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=64),
        seed=5,
        summarizer=summarizer,
    )


def test_one_question_rounds_models_and_histories():
    generator = ScriptedGenerator(respond)
    problem = TASK.load("eval", 1, seed=0)[0]
    record = asyncio.run(Debate(setup(), generator).debate_question(problem))

    assert [[t.model for t in r] for r in record.rounds] == [
        ["gen-0-it1", "gen-1-it1", "gen-2-it1"],
        ["critic-0-it1", "critic-1-it1", "critic-2-it1"],
    ]
    assert record.majority == str(truth(problem.question)) == problem.answer
    assert record.rounds[0][1].answer == str(truth(problem.question) + 1)
    # 3 first answers, 3 summaries (one per critic, of the *other* agents), 3 critic answers
    assert len(generator.requests) == 9
    summaries = [r for r in generator.requests if "Summarise" in r.messages[-1]["content"]]
    assert len(summaries) == 3 and all(r.model.name.startswith("critic-") for r in summaries)
    critic = next(
        r
        for r in generator.requests
        if r.model.name == "critic-1-it1" and "Summarise" not in r.messages[-1]["content"]
    )
    assert [m["role"] for m in critic.messages] == ["user", "assistant", "user"]
    assert critic.messages[1]["content"] == record.rounds[0][1].response  # its own first answer
    assert "summary: most agents agree" in critic.messages[2]["content"]
    assert record.rounds[1][1].summary == "summary: most agents agree"
    # sampling parameters and per-request seeds
    assert {r.sampling.temperature for r in generator.requests} == {0.7}
    assert len({r.seed for r in generator.requests}) == 9
    assert generator.requests[0].seed == request_seed(5, problem.id, 0, 1)


def test_the_critic_prompt_restates_the_question_and_shuffles_the_others_with_the_seed():
    def numbered(request) -> str:  # each generation agent says who it is
        if len(request.messages) == 1:
            return f"Agent {request.model.name} says 7."
        return "7"

    problems = TASK.load("eval", 12, seed=0)
    orders = []
    for seed in (5, 5, 6):
        debate = Debate(
            dataclasses.replace(setup(summarize=False), seed=seed), ScriptedGenerator(numbered)
        )
        records = [asyncio.run(debate.debate_question(p)) for p in problems]
        for record, problem in zip(records, problems, strict=True):
            assert problem.question in record.rounds[1][0].prompt
        orders.append([re.findall(r"gen-\d", r.rounds[1][0].prompt) for r in records])
    assert orders[0] == orders[1]  # the same seed, the same order
    assert orders[0] != orders[2]
    assert {tuple(o) for o in orders[0]} == {("gen-1", "gen-2"), ("gen-2", "gen-1")}


def test_without_summaries_critics_see_the_other_answers_verbatim():
    generator = ScriptedGenerator(respond)
    problem = TASK.load("eval", 1, seed=0)[0]
    record = asyncio.run(Debate(setup(summarize=False), generator).debate_question(problem))
    assert len(generator.requests) == 6
    prompt = record.rounds[1][0].prompt
    assert record.rounds[0][1].response in prompt and record.rounds[0][2].response in prompt
    assert record.rounds[1][0].summary is None


def test_a_dedicated_summarizer_model():
    generator = ScriptedGenerator(respond)
    problem = TASK.load("eval", 1, seed=0)[0]
    base = ModelRef(name="base")
    asyncio.run(Debate(setup(summarizer=base), generator).debate_question(problem))
    summaries = [r for r in generator.requests if "Summarise" in r.messages[-1]["content"]]
    assert {r.model.name for r in summaries} == {"base"}


def test_resume_after_a_kill_finishes_with_one_record_per_question(tmp_path):
    problems = TASK.load("train", 12, seed=0)
    path = tmp_path / "train" / "transcript.jsonl"
    # 12 questions x 9 requests, 3 answered at a time: questions finish from request 73 on
    killed = ScriptedGenerator(respond, fail_after=90, capacity=3)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(Debate(setup(), killed).run(problems, path, "train"))
    finished = read_transcript(path)
    assert 0 < len(finished) < len(problems)
    with path.open("a") as stream:  # and the kill tore a line in half
        stream.write('{"id": "arith')

    resumed = ScriptedGenerator(respond)
    records = asyncio.run(Debate(setup(), resumed).run(problems, path, "train"))
    assert [r.id for r in records] == [p.id for p in problems]
    lines = path.read_text().splitlines()
    assert len(lines) == len(problems) == len({json.loads(line)["id"] for line in lines})
    # finished questions were not asked again
    asked = {r.messages[0]["content"] for r in resumed.requests}
    assert not asked & {r.question for r in finished}
    # and the resumed debate sampled exactly what an uninterrupted one would have
    fresh = ScriptedGenerator(respond)
    asyncio.run(Debate(setup(), fresh).run(problems, tmp_path / "fresh.jsonl", "fresh"))
    seeds = {(r.model.name, r.messages[0]["content"]): r.seed for r in fresh.requests}
    assert all(seeds[(r.model.name, r.messages[0]["content"])] == r.seed for r in resumed.requests)


def test_a_transcript_from_another_debate_is_refused(tmp_path):
    path = tmp_path / "transcript.jsonl"
    asyncio.run(
        Debate(setup(), ScriptedGenerator(respond)).run(TASK.load("eval", 2, seed=0), path, "eval")
    )
    with pytest.raises(ValueError, match="use a fresh output directory"):
        asyncio.run(
            Debate(setup(), ScriptedGenerator(respond)).run(
                TASK.load("eval", 2, seed=1), path, "eval"
            )
        )


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "transcript.jsonl"
    path.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match=r"transcript.jsonl:1: not a transcript record"):
        read_transcript(path)


@pytest.mark.parametrize(
    "changed",
    [
        {"rounds": 3},
        {"summarize": False},
        {"summarizer": ModelRef(name="base")},
        {"sampling": SamplingConfig(temperature=1.0, top_p=0.9, max_tokens=64)},
        {"sampling": SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=128)},
        {
            "prompts": TASK.prompts.__class__(
                TASK.prompts.generation, "{others}?", "Summarise {responses}"
            )
        },
        {"agents": [AgentModels(generation=ModelRef(name="g"), critic=ModelRef(name="c"))] * 3},
        {"base_model": "/models/other@main/float32"},
    ],
    ids=lambda changed: next(iter(changed)),
)
def test_resuming_with_other_settings_debates_afresh(tmp_path, changed):
    """A transcript debated with other settings is not mixed into the new debate: it is moved
    aside and every question is debated again under the new settings."""
    problems = TASK.load("train", 4, seed=0)
    path = tmp_path / "transcript.jsonl"
    asyncio.run(Debate(setup(), ScriptedGenerator(respond)).run(problems, path, "train"))
    old = path.read_text()

    again = ScriptedGenerator(respond)
    new_setup = dataclasses.replace(setup(), **changed)
    asyncio.run(Debate(new_setup, again).run(problems, path, "train"))
    first_round = [
        r
        for r in again.requests
        if len(r.messages) == 1 and "Summarise" not in r.messages[0]["content"]
    ]
    assert len(first_round) == 4 * 3  # every question asked again, of every agent
    assert len(path.read_text().splitlines()) == 4
    assert (tmp_path / "transcript.jsonl.stale").read_text() == old
    assert json.loads((tmp_path / "transcript.settings.json").read_text()) == new_setup.settings()

    same = ScriptedGenerator(respond)  # and the same settings again resume: nothing to ask
    asyncio.run(Debate(new_setup, same).run(problems, path, "train"))
    assert same.requests == []


def test_a_transcript_without_recorded_settings_is_debated_afresh(tmp_path):
    """Written before settings were recorded (or by hand): nothing says how it was sampled."""
    problems = TASK.load("train", 2, seed=0)
    path = tmp_path / "transcript.jsonl"
    asyncio.run(Debate(setup(), ScriptedGenerator(respond)).run(problems, path, "train"))
    (tmp_path / "transcript.settings.json").unlink()
    again = ScriptedGenerator(respond)
    asyncio.run(Debate(setup(), again).run(problems, path, "train"))
    assert len(again.requests) == 2 * 9 and len(path.read_text().splitlines()) == 2
