"""A small Swarm Hive API client on aiohttp: form login with a session cookie, and JSON
requests that log in again once when the session expired (401)."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from eventray import ConnectorError
from eventray.spi import describe

from ._config import HiveLogin

log = logging.getLogger("eventray")


class HiveError(ConnectorError):
    """The Hive API answered ``status``; ``retriable`` for 5xx and 429."""

    def __init__(self, status: int, message: str, *, kind: str) -> None:
        super().__init__(f"HTTP {status}: {message}", kind=kind,
                         retriable=status >= 500 or status == 429)
        self.status = status


class HiveClient:
    """One logged-in session to the Hive API (opened on first use, ``close`` ends it)."""

    def __init__(self, config: HiveLogin, kind: str) -> None:
        self.config = config
        self.kind = kind
        self.logins = 0
        self._session: aiohttp.ClientSession | None = None
        self._logged_in = False

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # unsafe=True: keep cookies from IP addresses too (a Hive API on 127.0.0.1)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            )
            self._logged_in = False
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        self._logged_in = False
        if session is not None:
            await session.close()

    async def login(self) -> None:
        """``POST /login`` with the username and password as form fields; the answer sets
        the session cookie."""
        session = await self._open()
        session.cookie_jar.clear()
        form = {"username": self.config.username, "password": self.config.password}
        async with session.post(f"{self.config.base_url}/login", data=form) as response:
            text = await response.text(errors="replace")
            if response.status != 200:
                raise HiveError(response.status, f"login as {self.config.username!r} "
                                f"failed: {text[:200]}", kind=self.kind)
        self.logins += 1
        self._logged_in = True

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, need_json: bool = True) -> Any:
        """The JSON answer to ``method path`` (logging in first, and again once on 401);
        ``HiveError`` for any other status of 400 or more. An answer that is not JSON is a
        retriable ``ConnectorError``, or with ``need_json=False`` (the request was accepted:
        what matters is the status) logged and None."""
        for attempt in (1, 2):
            if not self._logged_in:
                await self.login()
            session = await self._open()
            async with session.request(method, f"{self.config.base_url}{path}",
                                       params=params, json=body) as response:
                text = await response.text(errors="replace")
                if response.status == 401 and attempt == 1:
                    self._logged_in = False  # the session expired: log in again
                    continue
                if response.status >= 400:
                    raise HiveError(response.status, f"{method} {path}: {text[:200]}",
                                    kind=self.kind)
            try:
                return _json(text, f"{method} {path}", self.kind)
            except ConnectorError as exc:
                if need_json:
                    raise
                log.warning("%s: %s answered %d with a body that is not JSON; the request "
                            "was accepted: %s", self.kind, f"{method} {path}",
                            response.status, describe(exc))
                return None
        raise AssertionError("unreachable")  # pragma: no cover


def _json(text: str, what: str, kind: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ConnectorError(f"{what}: the answer is not JSON: {text[:200]!r}", kind=kind,
                             retriable=True) from None
