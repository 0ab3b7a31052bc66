"""An in-process OpenAI-compatible server, standing in for vLLM in tests and benchmarks.

vLLM cannot be installed here, so the debate's HTTP path is exercised against this double. It
speaks just enough of the API for `openai.AsyncOpenAI` (`/v1/models`, `/v1/chat/completions`,
`/health`), and adds what a test needs to see and steer: every request body is recorded, faults
can be scheduled by request index, and latency plus a capacity limit imitate a server whose batch
is full, so a client's concurrency bound and retries can be observed from the server's side.

    async with StubOpenAIServer(["gen-0-it1"], latency=0.05) as server:
        backend = OpenAIBackend(base_urls={"gen-0-it1": server.base_url})
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[str, list[dict[str, Any]], dict[str, Any]], str | None]
"""(model, messages, params) -> content; params is the request body without model and messages.
Returning None sends `"content": null`, as a server may for an empty generation."""


def echo_responder(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Deterministic and different per model and seed, so a test can tell who answered what."""
    return f"{model} seed={params.get('seed')}"


@dataclass(frozen=True)
class RecordedRequest:
    """One POST /v1/chat/completions as it arrived, faulted or not."""

    index: int
    model: str | None
    messages: list[dict[str, Any]] | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    seed: int | None
    body: dict[str, Any]


@dataclass
class StubStats:
    total_requests: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    """Chat requests held at once, queued ones included: what a client's concurrency bound caps."""
    processing: int = 0
    max_processing: int = 0
    """Chat requests being served at once: never above `capacity`."""


class StubOpenAIServer:
    """Serve `models` on 127.0.0.1 at a free port while the `async with` block runs.

    faults: status codes to answer instead of a completion, by chat-request index (0-based, in
    order of arrival); a sequence means the first len(faults) requests. The attribute is a plain
    dict, so a test may schedule more faults while the server runs. A faulted request is answered
    at once, without latency or a capacity slot, as a real server's rate limiter would.
    retry_after: seconds sent as `Retry-After` with every fault, or None for no header. The openai
    client ignores `Retry-After: 0` and falls back to its own backoff (at least 0.375 s), so the
    default is a small positive value that keeps tests fast.
    api_key: as `vllm serve --api-key` (or $VLLM_API_KEY): /v1 answers 401 `{"error":
    "Unauthorized"}` to a request without `Authorization: Bearer <key>`; /health stays open.
    Every request's Authorization header is kept in `authorizations`.
    """

    def __init__(
        self,
        models: Iterable[str] = ("base",),
        *,
        responder: Responder = echo_responder,
        latency: float = 0.0,
        capacity: int | None = None,
        faults: Sequence[int] | Mapping[int, int] = (),
        retry_after: float | None = 0.01,
        api_key: str | None = None,
    ) -> None:
        self.models = list(models)
        self.api_key = api_key
        self.responder = responder
        self.latency = latency
        self.faults: dict[int, int] = (
            dict(faults) if isinstance(faults, Mapping) else dict(enumerate(faults))
        )
        self.retry_after = retry_after
        self.requests: list[RecordedRequest] = []
        self.authorizations: list[str | None] = []
        self.stats = StubStats()
        self._capacity = asyncio.Semaphore(capacity) if capacity else None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> StubOpenAIServer:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._chat)
        # handler_cancellation: a client that timed out and hung up stops the work, as in vLLM.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None

    @web.middleware
    async def _authenticate(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/v1"):
            given = request.headers.get("Authorization")
            self.authorizations.append(given)
            if self.api_key is not None and given != f"Bearer {self.api_key}":
                return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.Response:
        stats = self.stats
        index = stats.total_requests
        stats.total_requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await self._answer(index, request)
        finally:
            stats.in_flight -= 1
        stats.status_counts[response.status] += 1
        return response

    async def _answer(self, index: int, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.requests.append(RecordedRequest(index, None, None, None, None, None, None, {}))
            return _error(400, "BadRequestError", "request body is not a JSON object")
        model, messages = body.get("model"), body.get("messages")
        self.requests.append(
            RecordedRequest(
                index=index,
                model=model,
                messages=messages,
                temperature=body.get("temperature"),
                top_p=body.get("top_p"),
                max_tokens=body.get("max_tokens"),
                seed=body.get("seed"),
                body=body,
            )
        )
        if index in self.faults:
            status = self.faults[index]
            headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
            return _error(status, "InjectedFault", f"injected fault {status}", headers)
        if model not in self.models:
            return _error(404, "NotFoundError", f"The model `{model}` does not exist.")
        if not isinstance(messages, list) or not messages:
            return _error(400, "BadRequestError", "messages must be a non-empty list")
        if self._capacity is None:
            return await self._complete(index, body)
        async with self._capacity:
            return await self._complete(index, body)

    async def _complete(self, index: int, body: dict[str, Any]) -> web.Response:
        stats = self.stats
        stats.processing += 1
        stats.max_processing = max(stats.max_processing, stats.processing)
        try:
            await asyncio.sleep(self.latency)
        finally:
            stats.processing -= 1
        model, messages = body["model"], body["messages"]
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        content = self.responder(model, messages, params)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(content.split()) if content else 0
        return web.json_response(
            {
                "id": f"chatcmpl-stub-{index}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


def _error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """OpenAI's error body, which vLLM also sends and the openai client unwraps."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status, headers=headers)


def closed_port_url() -> str:
    """A base URL nothing listens on, for connection-refused tests: bind a free port, let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
