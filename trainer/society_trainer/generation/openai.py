"""Completions from OpenAI-compatible servers (vLLM), through the official `openai` client.

Retrying is the client's job, not ours: `AsyncOpenAI` already retries connection errors, timeouts,
408/409/429 and 5xx with jittered exponential backoff (0.5 s doubling to 8 s) and honours a
server's `Retry-After`/`retry-after-ms` up to two minutes, while 400/401/403/404/422 fail at once.
This module only bounds how many requests are in flight and turns the client's exceptions into a
`GenerationError` that names the model and the server, because a debate step's log is read by
someone who has to find which of many vLLM servers or adapters went wrong.

A debate sends thousands of small requests with dozens in flight, and profiling showed the client's
own CPU time was the bottleneck (about 9 ms per request against a 100 ms server). Two documented
options of the SDK remove most of it: the aiohttp transport (`DefaultAioHttpClient`, the SDK's
recommendation for high concurrency) and `client.post` with a plain JSON body, which skips the
SDK's recursive transformation of typed request parameters. Retries, timeouts and error types are
the same as with `chat.completions.create`.

The API key: $VLLM_API_KEY when it is set -- the variable `vllm serve` reads its key from, which
the operator gives both the servers and the debate Job from the Society's Secret, so the key is
never in the step config (plain text in the Job's spec) -- else the backend's `api_key` ("EMPTY":
a server started without a key accepts any). `society run` generates in-process and sets none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import openai
from openai.types.chat import ChatCompletion

from ..config import OpenAIBackend
from .base import CompletionRequest, GenerationError

API_KEY_ENV = "VLLM_API_KEY"


class OpenAIGenerator:
    """One `AsyncOpenAI` client per distinct base URL, so LoRA mode (every adapter on one server)
    shares one connection pool while full-finetuning mode gets one pool per model server. The
    semaphore is shared by all of them: `concurrency` is the step's budget, not a per-server one."""

    def __init__(self, backend: OpenAIBackend, *, concurrency: int) -> None:
        self._backend = backend
        self._api_key = os.environ.get(API_KEY_ENV) or backend.api_key
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self.requests_sent = 0
        self.completion_tokens = 0

    def _base_url(self, model_name: str) -> str:
        url = self._backend.base_urls.get(model_name, self._backend.default_base_url)
        if url is None:
            known = ", ".join(sorted(self._backend.base_urls)) or "none"
            raise GenerationError(
                f"model {model_name!r}: no base URL configured and no default_base_url "
                f"(known models: {known})"
            )
        return url

    def _client(self, url: str) -> openai.AsyncOpenAI:
        client = self._clients.get(url)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=url,
                api_key=self._api_key,
                timeout=self._backend.timeout_seconds,
                max_retries=self._backend.max_retries,
                http_client=openai.DefaultAioHttpClient(),
            )
            self._clients[url] = client
        return client

    async def complete(self, request: CompletionRequest) -> str:
        name = request.model.name
        url = self._base_url(name)
        client = self._client(url)
        sampling = request.sampling
        async with self._slots:
            self.requests_sent += 1
            try:
                response = await client.post(
                    "/chat/completions",
                    cast_to=ChatCompletion,
                    body={
                        "model": name,
                        "messages": list(request.messages),
                        "temperature": sampling.temperature,
                        "top_p": sampling.top_p,
                        "max_tokens": sampling.max_tokens,
                        "seed": request.seed,
                    },
                )
            except openai.APIError as err:
                reason = _describe(err, self._backend.timeout_seconds)
                raise GenerationError(f"model {name!r} at {url}: {reason}") from err
        if response.usage is not None:
            self.completion_tokens += response.usage.completion_tokens
        return response.choices[0].message.content or ""

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


def _describe(err: openai.APIError, timeout: float) -> str:
    """One line: what failed and, when the client retried, how many attempts it made, so a server
    that refused outright is told apart from one that kept failing. The client stamps each attempt
    with `x-stainless-retry-count`, which the error's request carries."""
    retries = int(err.request.headers.get("x-stainless-retry-count", "0"))
    attempts = f" (after {retries + 1} attempts)" if retries else ""
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {_server_message(err)}{attempts}"
    if isinstance(err, openai.APITimeoutError):
        refused = _os_error(err)
        if refused is None:
            return f"timed out after {timeout:g} s{attempts}"
        # The aiohttp transport reports a refused connection as a connect timeout; say what it was.
        return f"Connection error: {_one_line(str(refused))}{attempts}"
    cause = err.__cause__
    detail = f": {_one_line(str(cause))}" if cause is not None and str(cause) else ""
    return f"{_one_line(err.message).rstrip('.')}{detail}{attempts}"


def _os_error(err: BaseException) -> OSError | None:
    """The operating system's error somewhere down the exception chain, if any (not a timeout)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _server_message(err: openai.APIStatusError) -> str:
    """vLLM sends `{"error": {"message": ...}}` (older versions put `message` at the top level;
    the client unwraps `error` already); a proxy in between may send plain text or nothing."""
    body = err.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return _one_line(body["message"])
    if isinstance(body, str) and body.strip():
        return _one_line(body)[:300]
    return _one_line(err.message)


def _one_line(text: str) -> str:
    return " ".join(text.split())
