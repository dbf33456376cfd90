"""A Bandwidth-style SMS gateway on 127.0.0.1 for testing pipelines that use the SMS
connectors.

``SmsGatewaySimulator`` serves ``POST /api/v2/users/{accountId}/messages`` the way the real
messages API does (basic auth, E.164 numbers, 202 with the created message, Bandwidth-shaped
error bodies), records every message it accepted, can be told to fail, and calls a webhook
with ``message-received`` callbacks as the gateway does for inbound messages::

    async with SmsGatewaySimulator() as gateway:
        sink = er.connector("sms-sink", **gateway.sink_config(from_number="+15550001111"))
        ...
        [sent] = await gateway.wait_for(1)
        status = await gateway.send_inbound(source.url, from_="+15552223333",
                                            to="+15550001111", text="hi")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
from collections import deque
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from ._config import E164, basic_auth


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_received(*, from_: str, to: str, text: str, message_id: str = "",
                     application_id: str = "app-1", time: str = "",
                     media: list[str] | None = None) -> dict[str, Any]:
    """One ``message-received`` callback, shaped as Bandwidth's messaging v2 sends it."""
    when = time or _now()
    message: dict[str, Any] = {
        "id": message_id or f"in-{next(_ids)}", "time": when, "to": [to], "from": from_,
        "text": text, "applicationId": application_id, "owner": to, "direction": "in",
        "segmentCount": 1,
    }
    if media is not None:
        message["media"] = media
    return {"type": "message-received", "time": when, "description": "Incoming message "
            "received", "to": to, "message": message}


def delivery_report(sent: dict[str, Any], *, failed: bool = False) -> dict[str, Any]:
    """The ``message-delivered`` (or ``message-failed``) callback for a message the
    gateway accepted (one of ``SmsGatewaySimulator.sent``)."""
    report: dict[str, Any] = {
        "type": "message-failed" if failed else "message-delivered", "time": _now(),
        "description": "rejected-unallocated-to-number" if failed else "ok",
        "to": sent["to"][0], "message": {**sent, "direction": "out"},
    }
    if failed:
        report["errorCode"] = 4432
    return report


_ids = itertools.count(1)


def _bandwidth_error(status: int, kind: str, description: str,
                     field_errors: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": kind, "description": description}
    if field_errors:
        body["fieldErrors"] = field_errors
    return web.json_response(body, status=status)


class SmsGatewaySimulator:
    """A Bandwidth-style messages API and callback sender on 127.0.0.1 (a free port).

    ``fail_next(status, times=n)`` answers the next ``n`` send requests with ``status``;
    ``sent`` holds the messages accepted (as the API returned them); ``requests`` counts
    every send request.
    """

    def __init__(self, *, account_id: str = "9900000", application_id: str = "app-1",
                 username: str = "api-user", password: str = "api-password") -> None:
        self.account_id = account_id
        self.application_id = application_id
        self.username = username
        self.password = password
        self.port: int | None = None
        self.sent: list[dict[str, Any]] = []
        self.requests = 0
        self._failures: deque[int] = deque()
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def base_url(self) -> str:
        """The API's base URL (``sms-sink``'s ``base_url``)."""
        return f"http://127.0.0.1:{self.port}/api/v2"

    def sink_config(self, **fields: Any) -> dict[str, Any]:
        """An ``sms-sink`` config for this gateway, plus ``fields``."""
        return {"kind": "sms-sink", "base_url": self.base_url, "account_id": self.account_id,
                "application_id": self.application_id, "username": self.username,
                "password": self.password, **fields}

    def fail_next(self, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` send requests with ``status``."""
        self._failures.extend([status] * times)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/users/{account_id}/messages", self._send)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SmsGatewaySimulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return scheme == "Basic" and given == f"{self.username}:{self.password}"

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self._authorised(request):
            return _bandwidth_error(401, "unauthorized", "Authentication failed")
        if request.match_info["account_id"] != self.account_id:
            return _bandwidth_error(403, "forbidden", "Access to the account is denied")
        if self._failures:
            status = self._failures.popleft()
            return _bandwidth_error(status, "simulated", f"simulated failure {status}")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _bandwidth_error(400, "request-validation", "The body is not JSON")
        problems = self._problems(body)
        if problems:
            return _bandwidth_error(400, "request-validation",
                                    "Your request could not be accepted", problems)
        text = body.get("text", "")
        message = {
            "id": f"out-{next(_ids)}", "owner": body["from"], "applicationId":
            body["applicationId"], "time": _now(), "segmentCount": max(1, -(-len(text) // 160)),
            "direction": "out", "to": body["to"], "from": body["from"], "text": text,
        }
        self.sent.append(message)
        async with self._arrived:
            self._arrived.notify_all()
        return web.json_response(message, status=202)

    def _problems(self, body: Any) -> list[dict[str, str]]:
        if not isinstance(body, dict):
            return [{"fieldName": "body", "description": "must be an object"}]
        problems = []
        if body.get("applicationId") != self.application_id:
            problems.append({"fieldName": "applicationId",
                             "description": "is not an application of this account"})
        to = body.get("to")
        if not isinstance(to, list) or not to:
            problems.append({"fieldName": "to", "description": "must be a list of numbers"})
        else:
            problems += [{"fieldName": "to", "description": f"'{n}' must be replaced with a "
                          "valid E164 formatted telephone number"}
                         for n in to if not (isinstance(n, str) and E164.match(n))]
        sender = body.get("from")
        if not (isinstance(sender, str) and E164.match(sender)):
            problems.append({"fieldName": "from",
                             "description": "must be a valid E164 telephone number"})
        if not isinstance(body.get("text", ""), str):
            problems.append({"fieldName": "text", "description": "must be a string"})
        return problems

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The first ``count`` messages accepted, waiting up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.sent) >= count)
        return self.sent[:count]

    async def send_inbound(self, callback_url: str, *, from_: str, to: str, text: str,
                           auth: tuple[str, str] | None = None, media: list[str] | None = None,
                           ) -> int:
        """Call ``callback_url`` with a ``message-received`` callback, as the gateway does for
        a message to one of its numbers; the HTTP status the webhook answered."""
        callback = message_received(from_=from_, to=to, text=text, media=media,
                                    application_id=self.application_id)
        return await self.callback(callback_url, [callback], auth=auth)

    async def callback(self, callback_url: str, body: Any, *,
                       auth: tuple[str, str] | None = None) -> int:
        """POST ``body`` (callbacks, or anything) to ``callback_url`` as the gateway would,
        with basic auth when given; the HTTP status."""
        headers = {} if auth is None else {"Authorization": basic_auth(*auth)}
        async with aiohttp.ClientSession() as session, session.post(
                callback_url, json=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=30)) as response:
            await response.read()
            return response.status


__all__ = ["SmsGatewaySimulator", "basic_auth", "delivery_report", "message_received"]
