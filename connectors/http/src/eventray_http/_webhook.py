"""``webhook-source``: an aiohttp server that turns POSTs into events.

A request is answered 202 only once its events were handed to the stream (taken by
``read``), so a slow stream makes responses slower rather than losing events; 400 for a body
that does not decode, 401 for bad credentials (compared in constant time), 413 for a body
over ``max_body``, 503 while draining or when the stream did not take the events within
``handover_timeout`` (the client may retry: nothing was accepted). Limits count events, not
requests: ``max_pending`` events wait at most (plus one request's), and ``read(n)`` returns at
most ``n`` events but never part of a request (one request with more is handed over whole),
so a 202 never leaves events behind. ``GET /healthz`` reports readiness.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from eventray import BaseSource, Event
from eventray.spi import HandoverQueue

from ._config import BearerAuth, HmacAuth, WebhookSourceConfig
from ._formats import decode


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class WebhookSource(BaseSource[WebhookSourceConfig]):
    """Each accepted POST to ``path`` is one event (each item of a JSON array with
    ``batch=True``). ``port=0`` picks a free port; ``url`` says where it listens."""

    kind = "webhook-source"
    config_type = WebhookSourceConfig
    runs_in_driver = True  # it listens on this machine, where the program that owns it is

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.port: int | None = None
        self.accepted = 0
        self.refused: dict[int, int] = {}
        self._pending: HandoverQueue[Event] = HandoverQueue(self.config.max_pending)
        self._runner: web.AppRunner | None = None
        self._draining = False
        self._up: asyncio.Event | None = None  # made on first use: the source may be pickled

    @property
    def url(self) -> str:
        """Where the webhook listens (once started)."""
        return f"http://{self.config.host}:{self.port}{self.config.path}"

    def _listening(self) -> asyncio.Event:
        if self._up is None:
            self._up = asyncio.Event()
        return self._up

    async def listening(self) -> str:
        """Wait until the server listens (a stream or topic starts it); return its URL."""
        await self._listening().wait()
        return self.url

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=self.config.max_body)
        app.router.add_post(self.config.path, self._receive)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._listening().set()

    async def _health(self, request: web.Request) -> web.Response:
        if self._draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ok", "pending": len(self._pending)})

    def _refuse(self, status: int, message: str, **headers: str) -> web.Response:
        self.refused[status] = self.refused.get(status, 0) + 1
        return _json_error(status, message, **headers)

    async def _receive(self, request: web.Request) -> web.Response:
        config = self.config
        if self._draining:
            return self._refuse(503, "draining", **{"Retry-After": "1"})
        if request.content_length is not None and request.content_length > config.max_body:
            return self._refuse(413, f"body over {config.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"body over {config.max_body} bytes")
        if not self._authorised(request, body):
            return self._refuse(401, "bad credentials", **{"WWW-Authenticate": "Bearer"})
        try:
            value = decode(body, config.value_format)
        except ValueError as exc:
            return self._refuse(400, str(exc))
        values = value if config.batch and isinstance(value, list) else [value]
        if not values:
            return web.json_response({"accepted": 0}, status=202)
        headers = {"http-path": request.path}
        events = [Event(v, headers=headers) for v in values]
        if not await self._pending.offer(events, config.handover_timeout):
            return self._refuse(503, "the stream did not take the events",
                                **{"Retry-After": "1"})
        self.accepted += len(values)
        return web.json_response({"accepted": len(values)}, status=202)

    def _authorised(self, request: web.Request, body: bytes) -> bool:
        auth = self.config.auth
        if auth is None:
            return True
        if isinstance(auth, BearerAuth):
            given = request.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {auth.bearer}".encode())
        assert isinstance(auth, HmacAuth)
        given = request.headers.get(auth.header, "").removeprefix("sha256=")
        expected = hmac.new(auth.hmac_sha256.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), expected.encode())

    async def read(self, max_events: int) -> Sequence[Event] | None:
        return await self._pending.take(max_events)

    def drain(self) -> None:
        """Start refusing requests with 503 (and ``/healthz`` with 503, so a load balancer
        moves traffic away); requests the stream has not taken yet are refused too."""
        self._draining = True
        self._pending.refuse_queued()
        self._pending.close()

    def stop_reading(self) -> None:
        """A stream drains: ``drain`` (reads return what was taken, then None)."""
        self.drain()

    async def stop(self) -> None:
        """``drain``, then close the server."""
        self.drain()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
