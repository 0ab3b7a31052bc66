"""The debate's client and the servers' API key (issue 16 item 8): the operator gives the debate
Job the key in $VLLM_API_KEY (the variable `vllm serve` reads too), and the client sends it as
`Authorization: Bearer`. Without the variable (`society run`, or a server started without a key)
the client sends the placeholder a keyless vLLM accepts: nothing is refused."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from click.testing import CliRunner

from society_trainer.cli import main
from society_trainer.config import ModelRef, OpenAIBackend, SamplingConfig
from society_trainer.generation import CompletionRequest, GenerationError, make_generator

from .stub_openai import StubOpenAIServer
from .test_debate_step import MODELS, config, responder

pytestmark = pytest.mark.timeout(60)
KEY = "k3y-from-the-societys-secret"


def ask(model: str) -> CompletionRequest:
    messages = [{"role": "user", "content": "What is 2+3?"}]
    return CompletionRequest(ModelRef(name=model), messages, SamplingConfig(), 0)


async def complete(server: StubOpenAIServer) -> str:
    gen = make_generator(OpenAIBackend(base_urls={"base": server.base_url}), concurrency=2)
    try:
        return await gen.complete(ask("base"))
    finally:
        await gen.aclose()


@pytest.mark.asyncio
async def test_the_key_in_the_environment_is_sent(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    async with StubOpenAIServer(["base"], api_key=KEY) as server:
        assert await complete(server) == "base seed=0"
    assert server.authorizations == [f"Bearer {KEY}"]


@pytest.mark.asyncio
async def test_a_server_with_a_key_refuses_a_client_without_it_in_one_line(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    async with StubOpenAIServer(["base"], api_key=KEY) as server:
        with pytest.raises(GenerationError) as error:
            await complete(server)
    message = str(error.value)
    assert "\n" not in message and "HTTP 401" in message and "'base'" in message
    assert server.authorizations == ["Bearer EMPTY"]  # 401 is not retried
    assert KEY not in message


@pytest.mark.asyncio
async def test_without_a_key_nothing_is_refused(monkeypatch):
    """`society run` and keyless servers: no variable, no key asked for."""
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    async with StubOpenAIServer(["base"]) as server:
        assert await complete(server) == "base seed=0"


class KeyedServer:
    """The stub with a key, on its own loop in a thread, so the CLI under test runs its own."""

    def __init__(self, key: str) -> None:
        self.key, self.ready = key, threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        async with StubOpenAIServer(MODELS, responder=responder, api_key=self.key) as server:
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


def test_the_debate_step_sends_the_key_from_its_environment(tmp_path, monkeypatch):
    """`society-trainer debate` as the debate Job runs it: the key from the environment, the
    step config without it."""
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    with KeyedServer(KEY) as server:
        config(tmp_path, server.base_url)
        result = CliRunner().invoke(main, ["debate", "--config", str(tmp_path / "debate.yaml")])
        seen = set(server.authorizations)
    assert result.exit_code == 0, result.output
    assert seen == {f"Bearer {KEY}"}
    assert KEY not in (tmp_path / "debate.yaml").read_text()
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert KEY not in json.dumps(summary) and summary["eval"]["questions"] == 10
