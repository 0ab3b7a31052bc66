"""A fault-injecting HTTP proxy between a client (the operator's process) and the real
kube-apiserver, for the faults a real apiserver cannot be made to show on demand: a 409 on a
chosen write, a 500 before or after a request reached the apiserver, 410 Gone on a watch (as
the HTTP answer, or as the in-stream ERROR event that an expired resourceVersion brings), a
connection dropped in the middle of a watch stream or before an answer.

The client speaks plain HTTP to the proxy on 127.0.0.1 and sends its own credentials (its
bearer token), which the proxy forwards to the apiserver's TLS port unchanged: the apiserver
authenticates, authorises and audits the client as if it had called directly. Everything not
matched by a rule passes through as it is; watch streams are forwarded event by event.

    with FaultProxy(control_plane.server, control_plane.ca) as proxy:
        proxy.add(Fault("PUT", r"/societies/tiny/status$", respond(409), times=2))
        ... a kubeconfig with server proxy.url ...
        assert proxy.hits(...)
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# What the client may send on; the rest (hop-by-hop, encodings) the proxy leaves out.
FORWARDED_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent")
REASONS = {
    409: "Conflict",
    410: "Expired",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str) -> dict[str, Any]:
    """A metav1.Status, as the apiserver writes one."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown"),
        "code": code,
    }


@dataclass(frozen=True)
class Action:
    """What a fault does to a matched request.

    - `respond`: answer `code` without forwarding (nothing reached the apiserver).
    - `after`: forward, then answer `code` instead of the apiserver's answer (the write happened).
    - `expire`: a watch: forward `events` events, then the in-stream ERROR 410 event, and end.
    - `drop`: forward `events` events (of a watch; 0 for any request) and cut the connection
      without ending the response properly.
    - `hang`: never answer, nor close (a half-dead connection, a stalled apiserver): the
      client waits until its own timeout, or until it goes away.
    """

    kind: str
    code: int = 0
    events: int = 0


def respond(code: int) -> Action:
    return Action("respond", code)


def after(code: int) -> Action:
    return Action("after", code)


def expire(events: int = 0) -> Action:
    return Action("expire", 410, events)


def drop(events: int = 0) -> Action:
    return Action("drop", 0, events)


def hang() -> Action:
    return Action("hang")


@dataclass
class Fault:
    """`action` on the first `times` requests whose method is `method` ("*": any), whose path
    matches the regular expression `path`, and that are watches or not as `watch` says (None:
    either). `hits` counts the requests it acted on."""

    method: str
    path: str
    action: Action
    times: int = 1
    watch: bool | None = None
    hits: int = 0

    def matches(self, method: str, path: str, watching: bool) -> bool:
        return (
            self.hits < self.times
            and self.method in ("*", method)
            and (self.watch is None or self.watch == watching)
            and re.search(self.path, path) is not None
        )


@dataclass
class Seen:
    """One request through the proxy: what it was, and what the client got."""

    method: str
    path: str
    query: str
    watch: bool
    status: int
    fault: Action | None = None


@dataclass
class FaultProxy:
    upstream: str  # https://127.0.0.1:PORT
    ca: Path
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._streams: dict[asyncio.Queue[Action], str] = {}  # open watches: their paths

    # --- the test's side ---

    def add(self, *faults: Fault) -> FaultProxy:
        with self._lock:
            self.faults.extend(faults)
        return self

    def requests(self, predicate: Callable[[Seen], bool] = lambda _: True) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if predicate(seen)]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.url:
            raise RuntimeError("the fault proxy did not start") from self._error
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    # --- the proxy's side, in its own thread and event loop ---

    def _fault_for(self, method: str, path: str, watching: bool) -> Action | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, watching):
                    fault.hits += 1
                    return fault.action
        return None

    def _record(self, request: web.Request, watching: bool, status: int, fault: Action | None):
        seen = Seen(request.method, request.path, request.query_string, watching, status, fault)
        with self._lock:
            self.seen.append(seen)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by __enter__
            self._error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        context = ssl.create_default_context(cafile=str(self.ca))
        connector = aiohttp.TCPConnector(ssl=context, limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            app = web.Application(client_max_size=64 * 1024**2)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
            )
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            try:
                await self._stopping.wait()
            finally:
                await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watching = request.query.get("watch") in ("true", "1")
        action = self._fault_for(request.method, request.path, watching)
        if action is not None and action.kind == "respond":
            self._record(request, watching, action.code, action)
            message = f"injected by the test's fault proxy: {action.code}"
            return web.json_response(status_body(action.code, message), status=action.code)
        if action is not None and action.kind == "drop" and not watching:
            self._record(request, watching, 0, action)
            return self._cut(request)
        if action is not None and action.kind == "hang":
            self._record(request, watching, 0, action)
            assert self._stopping is not None
            await self._stopping.wait()  # aiohttp cancels this when the client goes away
            return self._cut(request)
        headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
        body = await request.read() if request.can_read_body else None
        url = self.upstream + request.path_qs
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                # The kubernetes client sends its JSON bodies without a Content-Type, which the
                # apiserver takes; aiohttp's own default (octet-stream) it refuses.
                skip_auto_headers=("Content-Type", "Accept-Encoding"),
            )
        except aiohttp.ClientError:  # the apiserver is down: the client sees a cut connection
            self._record(request, watching, 0, action)
            return self._cut(request)
        async with upstream:
            if action is not None and action.kind == "after":
                await upstream.read()
                self._record(request, watching, action.code, action)
                message = f"injected by the test's fault proxy (the apiserver: {upstream.status})"
                return web.json_response(status_body(action.code, message), status=action.code)
            self._record(request, watching, upstream.status, action)
            content_type = upstream.headers.get("Content-Type", "application/json")
            if not watching or upstream.status != 200:
                payload = await upstream.read()
                return web.Response(
                    status=upstream.status, body=payload, headers={"Content-Type": content_type}
                )
            return await self._stream(request, upstream, content_type, action)

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        content_type: str,
        action: Action | None,
    ) -> web.StreamResponse:
        """A watch, forwarded line by line (one event a line) as it comes, until its end, its
        fault, or an `interrupt` from the test."""
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        await response.prepare(request)
        commands: asyncio.Queue[Action] = asyncio.Queue()
        self._streams[commands] = request.path
        events = 0
        read: asyncio.Future[bytes] | None = None
        command: asyncio.Future[Action] | None = None
        try:
            while True:
                if action is not None and events >= action.events:
                    if action.kind == "expire":
                        message = "too old resource version: injected by the test's fault proxy"
                        error = {"type": "ERROR", "object": status_body(410, message)}
                        await response.write(json.dumps(error).encode() + b"\n")
                        break
                    self._abort(request)  # drop
                    return response
                read = asyncio.ensure_future(upstream.content.readline())
                command = asyncio.ensure_future(commands.get())
                done, _ = await asyncio.wait({read, command}, return_when="FIRST_COMPLETED")
                if command in done:
                    read.cancel()
                    action, events = command.result(), 0
                    continue
                command.cancel()
                line = read.result()
                if not line:
                    break
                await response.write(line)
                events += 1
        except (aiohttp.ClientError, ConnectionError):
            self._abort(request)
            return response
        finally:
            self._streams.pop(commands, None)
            for task in (read, command):  # the client went away, or the stream ended
                if task is not None:
                    task.cancel()
                    if task.done() and not task.cancelled():
                        task.exception()  # retrieved: asyncio would log it otherwise
        await response.write_eof()
        return response

    def interrupt(self, action: Action, path: str = "") -> int:
        """Apply `action` (`expire()` or `drop()`) to every watch stream open now whose path
        matches `path`; return how many there were."""

        async def send() -> int:
            matched = [q for q, p in self._streams.items() if re.search(path, p)]
            for queue in matched:
                queue.put_nowait(action)
            return len(matched)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    def _cut(self, request: web.Request) -> web.StreamResponse:
        """Close the connection with no answer (the client sees it reset or closed)."""
        self._abort(request)
        return web.Response(status=502)  # never sent: the transport is gone
