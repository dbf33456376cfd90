"""``sms-source``: an aiohttp server taking Bandwidth-style message callbacks.

A callback is answered 2xx only once its events were handed to the stream (taken by
``read``), so an accepted message is never lost and the gateway, which retries callbacks
that fail, sends again what was refused: 400 for a body that is not a list of callbacks,
401 for bad credentials (compared in constant time), 413 over ``max_body``, 503 while
draining (callbacks already queued when a drain starts are still handed over), when the
stream did not take the events within ``handover_timeout``, or (before its body is read) when
``max_concurrent_callbacks`` callbacks are being handled already, so memory stays bounded
(at most that many bodies of at most ``max_body`` bytes) however many the gateway sends at
once. Delivery
reports of outbound messages are answered 200 and skipped (counted in ``skipped``), unless
``delivery_reports=True`` makes them events too.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from eventray import BaseSource, Event
from eventray.spi import HandoverQueue

from ._callbacks import BadCallback, parse
from ._config import BasicAuth, SmsSourceConfig, basic_auth

log = logging.getLogger("eventray.sms")


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class SmsSource(BaseSource[SmsSourceConfig]):
    """Each inbound message a callback to ``path`` reports is one event
    ``{"id", "from", "to", "text", "time"}`` keyed by the sender's number. ``port=0`` picks
    a free port; ``url`` says where it listens (give it to the gateway as the callback URL)."""

    kind = "sms-source"
    config_type = SmsSourceConfig
    runs_in_driver = True  # it listens on this machine, where the program that owns it is

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.port: int | None = None
        self.accepted = 0
        self.refused: dict[int, int] = {}
        self.skipped: dict[str, int] = {}
        self._pending: HandoverQueue[Event] = HandoverQueue(self.config.max_pending)
        self._runner: web.AppRunner | None = None
        self._draining = False
        self._handling = 0  # callbacks being handled (body read, parsed or handed over)
        self._up: asyncio.Event | None = None  # made on first use: the source may be pickled
        auth = self.config.auth
        if isinstance(auth, BasicAuth):
            self._expected: str | None = basic_auth(auth.username, auth.password)
        else:
            self._expected = None if auth is None else f"Bearer {auth.bearer}"

    @property
    def url(self) -> str:
        """Where the callbacks go (once started)."""
        return f"http://{self.config.host}:{self.port}{self.config.path}"

    @property
    def draining(self) -> bool:
        """Callbacks are answered 503 (``drain`` or ``stop`` was called)."""
        return self._draining

    @property
    def pending(self) -> int:
        """Events waiting for the stream to take them."""
        return len(self._pending)

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
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._listening().set()

    def _refuse(self, status: int, message: str, **headers: str) -> web.Response:
        self.refused[status] = self.refused.get(status, 0) + 1
        return _error(status, message, **headers)

    @property
    def handling(self) -> int:
        """Callbacks being handled (their bodies read, parsed or waiting for the stream)."""
        return self._handling

    async def _receive(self, request: web.Request) -> web.Response:
        if self._draining:
            return self._refuse(503, "draining", **{"Retry-After": "1"})
        if not self._authorised(request):
            scheme = "Basic" if isinstance(self.config.auth, BasicAuth) else "Bearer"
            return self._refuse(401, "bad credentials", **{"WWW-Authenticate": scheme})
        if self._handling >= self.config.max_concurrent_callbacks:
            return self._refuse(503, "too many callbacks at once", **{"Retry-After": "1"})
        self._handling += 1
        try:
            return await self._handle(request)
        finally:
            self._handling -= 1

    async def _handle(self, request: web.Request) -> web.Response:
        """Read, parse and hand over one authorised callback: the reply."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"body over {self.config.max_body} bytes")
        try:
            parsed = parse(json.loads(body), delivery_reports=self.config.delivery_reports)
        except (ValueError, RecursionError) as exc:  # BadCallback, JSON, UTF-8
            reason = str(exc) if isinstance(exc, BadCallback) else "body is not JSON"
            return self._refuse(400, reason)
        for kind, count in parsed.skipped.items():
            self.skipped[kind] = self.skipped.get(kind, 0) + count
        if not parsed.values:
            return web.json_response({"accepted": 0}, status=200)
        events = [Event(value, key=value["from"], ts=ts, headers={"http-path": request.path})
                  for value, ts in parsed.values]
        if not await self._pending.offer(events, self.config.handover_timeout):
            return self._refuse(503, "the stream did not take the events",
                                **{"Retry-After": "1"})
        self.accepted += len(events)
        return web.json_response({"accepted": len(events)}, status=200)

    def _authorised(self, request: web.Request) -> bool:
        if self._expected is None:
            return True
        given = request.headers.get("Authorization", "")
        # aiohttp keeps bytes that are not UTF-8 as surrogates: encoded so that none fails
        # and none can match
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                   self._expected.encode())

    async def read(self, max_events: int) -> Sequence[Event] | None:
        return await self._pending.take(max_events)

    def drain(self) -> None:
        """Answer 503 to new callbacks (and to those waiting for room); callbacks already
        queued are still handed to ``read``, which then returns None."""
        self._draining = True
        self._pending.close()

    def stop_reading(self) -> None:
        """A stream drains: ``drain``."""
        self.drain()

    async def stop(self) -> None:
        """``drain``, refuse (503) what the stream has not taken, then close the server."""
        self.drain()
        self._pending.refuse_queued()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
