"""``HiveSimulator``: a loopback Swarm Hive API for testing pipelines with the satellite
connectors (the real satellite network cannot run here).

It speaks the Hive API's shape on 127.0.0.1 (a free port): ``POST /login`` (form fields
``username``/``password``; sets the ``JSESSIONID`` cookie), ``GET /api/v1/messages``
(``count``, ``status=0`` for packets not yet acknowledged, ``deviceid``, ``startPacketId``;
oldest first), ``POST /api/v1/messages/rxack/{packetId}`` and ``POST /api/v1/messages``
(a message to a device). Every API call without a valid session gets 401::

    async with HiveSimulator() as hive:
        packet_id = hive.inject(device_id=42, data=b"hello")
        source = er.connector("satellite-source", base_url=hive.url, username=hive.username,
                              password=hive.password, period=100)
        ...
        await hive.wait_for_acked([packet_id])

``expire_sessions()`` logs every client out (the next call gets 401), ``fail_next(n)`` answers
the next ``n`` calls with 503, ``inject_malformed`` adds a packet with fields of any JSON (a
misbehaving gateway), and ``ignore_start=True`` makes the gateway ignore ``startPacketId``;
``sent`` records messages to devices, ``acked`` the acknowledged packet ids and
``handed_out`` how often each packet was returned.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

COOKIE = "JSESSIONID"


@dataclass(frozen=True)
class Packet:
    """A packet a device sent up, waiting at the gateway."""

    packet_id: int
    device_id: int
    data: bytes
    received_at: str
    device_type: int = 1
    application_id: int = 0

    def json(self, status: int) -> dict[str, Any]:
        return {"packetId": self.packet_id, "deviceType": self.device_type,
                "deviceId": self.device_id, "deviceName": f"device-{self.device_id}",
                "dataType": 6, "userApplicationId": self.application_id,
                "organizationId": 1, "len": len(self.data),
                "data": base64.b64encode(self.data).decode("ascii"), "ackPacketId": 0,
                "status": status, "hiveRxTime": self.received_at}


@dataclass(frozen=True)
class SentMessage:
    """A message posted for a device (``POST /api/v1/messages``)."""

    packet_id: int
    device_type: int
    device_id: int
    application_id: int
    data: bytes


class HiveSimulator:
    """A Swarm Hive API on 127.0.0.1; an async context manager (``start``/``stop``)."""

    def __init__(self, *, username: str = "beaver", password: str = "hunter2",
                 ignore_start: bool = False) -> None:
        self.username = username
        self.password = password
        self.ignore_start = ignore_start  # every page starts at the oldest packet
        self.port: int | None = None
        self.packets: dict[int, Packet] = {}
        self.acked: list[int] = []
        self.sent: list[SentMessage] = []
        self.handed_out: Counter[int] = Counter()
        self.logins = 0
        self.calls = 0
        self._sessions: set[str] = set()
        self._ids = itertools.count(1000)
        self._failures: list[int] = []  # statuses for the next calls
        self._raw: dict[int, dict[str, Any]] = {}  # packets' fields given as they are
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        """The API's root (``base_url`` of the connectors)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def unacked(self) -> list[int]:
        """Ids of packets waiting to be acknowledged."""
        done = set(self.acked)
        return [i for i in self.packets if i not in done]

    def inject(self, device_id: int, data: bytes | str, *, application_id: int = 0) -> int:
        """A device sends a packet up; returns its packet id."""
        packet_id = next(self._ids)
        raw = data.encode() if isinstance(data, str) else data
        when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.packets[packet_id] = Packet(packet_id, device_id, raw, when,
                                         application_id=application_id)
        return packet_id

    def inject_raw(self, device_id: int, data_base64: str) -> int:
        """A packet whose ``data`` field is exactly ``data_base64`` (even if not base64)."""
        return self.inject_malformed(device_id, data=data_base64)

    def inject_malformed(self, device_id: int = 1, **fields: Any) -> int:
        """A packet whose JSON ``fields`` are exactly these, whatever they are (for example
        ``packetId="7"``, ``deviceId=[1]`` or ``hiveRxTime=float("nan")``); returns the id
        the simulator orders and acknowledges it by."""
        packet_id = self.inject(device_id, b"")
        self._raw[packet_id] = fields
        return packet_id

    def expire_sessions(self) -> None:
        """Every session ends: the next API call of each client gets 401."""
        self._sessions.clear()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` calls (login included) with ``status``."""
        self._failures.extend([status] * count)

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._faults])
        app.router.add_post("/login", self._login)
        app.router.add_get("/api/v1/messages", self._messages)
        app.router.add_post("/api/v1/messages", self._send)
        app.router.add_post("/api/v1/messages/rxack/{packet_id}", self._ack)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening (``start`` again listens on the same port: a gateway that was
        down for a while)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HiveSimulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @web.middleware
    async def _faults(self, request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        self.calls += 1
        if self._failures:
            status = self._failures.pop(0)
            return web.json_response({"message": "injected failure"}, status=status)
        if request.path != "/login" and request.cookies.get(COOKIE) not in self._sessions:
            return web.json_response({"message": "not logged in"}, status=401)
        response: web.StreamResponse = await handler(request)
        await self._notify()
        return response

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("username") != self.username or form.get("password") != self.password:
            return web.json_response({"message": "bad credentials"}, status=401)
        token = secrets.token_hex(16)
        self._sessions.add(token)
        self.logins += 1
        response = web.json_response({"token": token})
        response.set_cookie(COOKIE, token, httponly=True)
        return response

    async def _messages(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            count = int(query.get("count", "10"))
            status = int(query["status"]) if "status" in query else None
            device = int(query["deviceid"]) if "deviceid" in query else None
            first = int(query.get("startPacketId", "0"))
        except ValueError as exc:
            return web.json_response({"message": f"bad query: {exc}"}, status=400)
        if not 0 < count <= 1000:
            return web.json_response({"message": "count must be 1..1000"}, status=400)
        acked = set(self.acked)
        found = []
        for packet_id in sorted(self.packets):
            packet = self.packets[packet_id]
            state = 1 if packet_id in acked else 0
            if (packet_id < first and not self.ignore_start) \
                    or (status is not None and state != status) \
                    or (device is not None and packet.device_id != device):
                continue
            body = packet.json(state)
            body.update(self._raw.get(packet_id, {}))
            found.append(body)
            self.handed_out[packet_id] += 1
            if len(found) == count:
                break
        return web.json_response(found)

    async def _ack(self, request: web.Request) -> web.Response:
        try:
            packet_id = int(request.match_info["packet_id"])
        except ValueError:
            return web.json_response({"message": "bad packet id"}, status=400)
        if packet_id not in self.packets:
            return web.json_response({"message": "no such packet"}, status=404)
        if packet_id not in self.acked:
            self.acked.append(packet_id)
        return web.json_response({"packetId": packet_id, "status": "OK"})

    async def _send(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            message = SentMessage(
                next(self._ids), _int(body, "deviceType"), _int(body, "deviceId"),
                _int(body, "userApplicationId"),
                base64.b64decode(body["data"], validate=True),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            return web.json_response({"message": f"bad message: {exc!r}"}, status=400)
        if not message.data:
            return web.json_response({"message": "empty data"}, status=400)
        self.sent.append(message)
        return web.json_response({"packetId": message.packet_id, "status": "OK"})

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        assert self._changed is not None, "start the simulator first"
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(done)

    async def wait_for_sent(self, count: int, timeout: float = 20.0) -> list[SentMessage]:  # noqa: ASYNC109
        """The first ``count`` messages sent to devices, waiting up to ``timeout`` seconds."""
        await self._wait(lambda: len(self.sent) >= count, timeout)
        return self.sent[:count]

    async def wait_for_acked(self, packet_ids: list[int], timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """Wait until every one of ``packet_ids`` is acknowledged."""
        await self._wait(lambda: set(packet_ids) <= set(self.acked), timeout)

    async def wait_for_handed_out(self, packet_id: int, times: int = 1,
                                  timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """Wait until ``packet_id`` was returned by ``GET /api/v1/messages`` ``times`` times."""
        await self._wait(lambda: self.handed_out[packet_id] >= times, timeout)


def _int(body: Any, name: str) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int")
    return value


__all__ = ["HiveSimulator", "Packet", "SentMessage"]
