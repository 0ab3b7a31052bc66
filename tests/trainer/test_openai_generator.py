"""The vLLM client against the stub server: what arrives, where it goes, what is retried and how
failures read. The stub answers faults with a 10 ms Retry-After, so retries cost milliseconds."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from society_trainer.config import ModelRef, OpenAIBackend, SamplingConfig
from society_trainer.generation import CompletionRequest, GenerationError, make_generator
from society_trainer.generation.openai import OpenAIGenerator
from tests.trainer.stub_openai import StubOpenAIServer, closed_port_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

SAMPLING = SamplingConfig(temperature=0.7, top_p=0.8, max_tokens=123)


def ask(model: str, seed: int = 0, question: str = "What is 2+3?") -> CompletionRequest:
    messages = [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": question},
    ]
    return CompletionRequest(ModelRef(name=model), messages, SAMPLING, seed)


def generator(
    base_urls: dict[str, str], *, concurrency: int = 8, **backend: object
) -> OpenAIGenerator:
    gen = make_generator(OpenAIBackend(base_urls=base_urls, **backend), concurrency=concurrency)
    assert isinstance(gen, OpenAIGenerator)
    return gen


async def test_model_name_and_sampling_arrive_as_sent():
    async with StubOpenAIServer(["gen-1-it2"]) as server:
        gen = generator({"gen-1-it2": server.base_url})
        try:
            content = await gen.complete(ask("gen-1-it2", seed=42))
        finally:
            await gen.aclose()

    assert content == "gen-1-it2 seed=42"
    [seen] = server.requests
    assert seen.model == "gen-1-it2"
    assert seen.messages == ask("gen-1-it2").messages
    assert (seen.temperature, seen.top_p, seen.max_tokens, seen.seed) == (0.7, 0.8, 123, 42)
    assert gen.requests_sent == 1
    assert gen.completion_tokens == 2  # the stub counts whitespace-separated words


async def test_each_model_goes_to_its_own_server_and_unknown_names_fail_early():
    async with (
        StubOpenAIServer(["gen-0-it1"]) as first,
        StubOpenAIServer(["critic-0-it1", "base"]) as second,
    ):
        gen = generator(
            {"gen-0-it1": first.base_url, "critic-0-it1": second.base_url},
            default_base_url=second.base_url,
        )
        no_default = generator({"gen-0-it1": first.base_url})
        try:
            answers = await asyncio.gather(
                gen.complete(ask("gen-0-it1", seed=1)),
                gen.complete(ask("critic-0-it1", seed=2)),
                gen.complete(ask("base", seed=3)),
            )
            with pytest.raises(GenerationError, match=r"'critic-0-it1'.*known models: gen-0-it1"):
                await no_default.complete(ask("critic-0-it1"))
        finally:
            await gen.aclose()
            await no_default.aclose()

    assert answers == ["gen-0-it1 seed=1", "critic-0-it1 seed=2", "base seed=3"]
    assert [r.model for r in first.requests] == ["gen-0-it1"]
    assert sorted(r.model for r in second.requests) == ["base", "critic-0-it1"]


async def test_null_content_reads_as_empty_string():
    async with StubOpenAIServer(["m"], responder=lambda *_: None) as server:
        gen = generator({"m": server.base_url})
        try:
            assert await gen.complete(ask("m")) == ""
        finally:
            await gen.aclose()


async def test_rate_limits_and_server_errors_are_retried_until_success():
    async with StubOpenAIServer(["m"], faults=[429, 500, 503]) as server:
        gen = generator({"m": server.base_url}, max_retries=3)
        try:
            assert await gen.complete(ask("m", seed=5)) == "m seed=5"
        finally:
            await gen.aclose()

    assert server.stats.total_requests == 4
    assert server.stats.status_counts == {429: 1, 500: 1, 503: 1, 200: 1}
    assert {r.seed for r in server.requests} == {5}  # every attempt is the same request
    assert gen.requests_sent == 1


@pytest.mark.parametrize(
    ("faults", "status", "server_message"),
    [
        ({}, 404, "The model `gen-1-it2` does not exist."),
        ({0: 400}, 400, "injected fault 400"),
        ({0: 401}, 401, "injected fault 401"),
        ({0: 422}, 422, "injected fault 422"),
    ],
)
async def test_client_errors_fail_at_once_naming_model_server_and_status(
    faults, status, server_message
):
    async with StubOpenAIServer(["base"], faults=faults) as server:
        gen = generator({}, default_base_url=server.base_url, max_retries=3)
        try:
            with pytest.raises(GenerationError) as caught:
                await gen.complete(ask("gen-1-it2"))
        finally:
            await gen.aclose()

    assert str(caught.value) == (
        f"model 'gen-1-it2' at {server.base_url}: HTTP {status}: {server_message}"
    )
    assert server.stats.total_requests == 1


async def test_persistent_server_errors_give_up_after_max_retries():
    async with StubOpenAIServer(["m"], faults=[503, 503, 503, 503]) as server:
        gen = generator({"m": server.base_url}, max_retries=2)
        try:
            with pytest.raises(GenerationError) as caught:
                await gen.complete(ask("m"))
        finally:
            await gen.aclose()

    assert str(caught.value) == (
        f"model 'm' at {server.base_url}: HTTP 503: injected fault 503 (after 3 attempts)"
    )
    assert server.stats.total_requests == 3


async def test_refused_connections_are_retried_then_fail(caplog):
    """Without a server there is no Retry-After, so this pays one client backoff (<= 0.5 s)."""
    url = closed_port_url()
    gen = generator({"m": url}, max_retries=1)
    caplog.set_level(logging.INFO, logger="openai")
    try:
        with pytest.raises(GenerationError) as caught:
            await gen.complete(ask("m"))
    finally:
        await gen.aclose()

    message = str(caught.value)
    assert message.startswith(f"model 'm' at {url}: Connection error: ")
    assert message.endswith("(after 2 attempts)")
    assert sum("Retrying request" in r.getMessage() for r in caplog.records) == 1


async def test_a_server_slower_than_the_timeout_fails_naming_the_timeout():
    async with StubOpenAIServer(["m"], latency=5.0) as server:
        gen = generator({"m": server.base_url}, timeout_seconds=0.2, max_retries=0)
        try:
            with pytest.raises(GenerationError, match=r"^model 'm' at .*: timed out after 0.2 s$"):
                await gen.complete(ask("m"))
        finally:
            await gen.aclose()


async def test_concurrency_bound_holds_at_the_server():
    async with StubOpenAIServer(["m"], latency=0.05) as server:
        gen = generator({"m": server.base_url}, concurrency=4)
        try:
            answers = await asyncio.gather(*(gen.complete(ask("m", seed=i)) for i in range(20)))
        finally:
            await gen.aclose()

    assert answers == [f"m seed={i}" for i in range(20)]
    assert server.stats.max_in_flight == 4
    assert gen.requests_sent == 20


async def test_stub_capacity_queues_the_excess():
    """The stub's batch limit, which benchmarks rely on: excess requests wait, none is refused."""
    async with StubOpenAIServer(["m"], latency=0.05, capacity=2) as server:
        gen = generator({"m": server.base_url}, concurrency=8)
        started = time.perf_counter()
        try:
            await asyncio.gather(*(gen.complete(ask("m", seed=i)) for i in range(8)))
        finally:
            await gen.aclose()
        elapsed = time.perf_counter() - started

    assert server.stats.max_in_flight == 8
    assert server.stats.max_processing == 2
    assert server.stats.status_counts == {200: 8}
    assert elapsed >= 4 * 0.05
