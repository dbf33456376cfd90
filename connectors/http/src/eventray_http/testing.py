"""Loopback HTTP servers for testing pipelines that use the HTTP connectors.

``SlackWebhook`` speaks the shape of a Slack incoming webhook and records every message;
``ScriptedEndpoint`` answers from a script of responses and records every request. Both listen
on 127.0.0.1 on a free port and are async context managers::

    async with SlackWebhook() as slack:
        sink = er.connector("slack-sink", webhook_url=slack.url, channel="#alerts")
        ...
        assert [m["text"] for m in await slack.wait_for(1)] == ["AAPL is up"]
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted response; ``body`` is sent as JSON unless it is ``str`` or ``bytes``."""

    status: int = 200
    body: Any = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def response(self) -> web.Response:
        if isinstance(self.body, bytes):
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        if isinstance(self.body, str):
            return web.Response(status=self.status, text=self.body, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass(frozen=True)
class Received:
    """A request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _LoopbackServer:
    """An aiohttp server on 127.0.0.1 that records what it receives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[Received] = []
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> _LoopbackServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> Received:
        received = Received(request.method, request.path, dict(request.headers),
                            await request.read(), asyncio.get_running_loop().time())
        self.requests.append(received)
        return received

    async def _changed(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Received]:  # noqa: ASYNC109
        """The first ``count`` requests, waiting up to ``timeout`` seconds for them."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests[:count]


class ScriptedEndpoint(_LoopbackServer):
    """Answers each request with the next ``Reply`` of ``script`` (the last one repeats), or
    with what ``script(request_number)`` returns."""

    def __init__(self, script: Iterable[Reply] | Callable[[int], Reply] = (),
                 path: str = "/") -> None:
        super().__init__(path)
        self._script = script if callable(script) else list(script) or [Reply()]

    def _reply(self, number: int) -> Reply:
        if callable(self._script):
            return self._script(number)
        return self._script[min(number, len(self._script) - 1)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        number = len(self.requests)
        await self._record(request)
        await self._changed()
        reply = self._reply(number)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply.response()


class SlackWebhook(_LoopbackServer):
    """A Slack incoming webhook: takes ``{"text", "channel", ...}`` JSON, answers ``ok``;
    400 ``invalid_payload`` without text. ``rate_limit_first`` requests get 429 with
    ``Retry-After: retry_after``, the way Slack throttles."""

    def __init__(self, *, rate_limit_first: int = 0, retry_after: float = 1.0,
                 path: str = "/services/T000/B000/XXXXXXXX") -> None:
        super().__init__(path)
        self.rate_limit_first = rate_limit_first
        self.retry_after = retry_after
        self.messages: list[dict[str, Any]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        try:
            return self._answer(request, received)
        finally:
            await self._changed()

    def _answer(self, request: web.Request, received: Received) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="invalid_method")
        if len(self.requests) <= self.rate_limit_first:
            return web.Response(status=429, text="rate_limited",
                                headers={"Retry-After": str(self.retry_after)})
        try:
            message = received.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(message, dict) or not message.get("text"):
            return web.Response(status=400, text="no_text")
        self.messages.append(message)
        return web.Response(text="ok")

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The first ``count`` messages accepted, waiting up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return self.messages[:count]


__all__ = ["Received", "Reply", "ScriptedEndpoint", "SlackWebhook"]
