"""``sms-sink``: one message per event through a Bandwidth-style messages REST API.

Each event ``{"to", "text"}`` (``to`` a number or a list of numbers; an optional ``from``
overrides ``from_number``) is posted as ``{"applicationId", "to": [...], "from", "text"}`` to
``{base_url}/users/{account_id}/messages`` with basic auth; the gateway answers 202. 5xx, 429,
timeouts and refused connections are retried with exponential backoff and jitter, at most
``retries`` times; any other 4xx (a bad number, bad credentials) or an event that is not a
message makes that event a dead letter while the rest of the batch counts as sent.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from eventray import BaseSink, Event, RejectedEvents
from eventray.spi import describe

from ._config import SmsSinkConfig, basic_auth, phone_number


class NotAMessage(ValueError):
    """An event an ``sms-sink`` cannot turn into a message."""


def message_body(value: Any, config: SmsSinkConfig) -> dict[str, Any]:
    """The request body for an event value; ``NotAMessage`` says what is wrong."""
    if not isinstance(value, dict):
        raise NotAMessage("an sms-sink event is a dict {'to', 'text'}, not "
                          f"{type(value).__name__}")
    to = value.get("to")
    numbers = [to] if isinstance(to, str) else to
    if not isinstance(numbers, list) or not numbers or not all(
            isinstance(n, str) for n in numbers):
        raise NotAMessage("'to' must be a phone number or a list of them")
    text = value.get("text")
    if not isinstance(text, str):
        raise NotAMessage("'text' must be a string")
    sender = value.get("from", config.from_number)
    try:
        for number in [*numbers, sender]:
            phone_number(number)
    except (ValueError, TypeError) as exc:
        raise NotAMessage(str(exc)) from None
    return {"applicationId": config.application_id, "to": numbers, "from": sender,
            "text": text}


def _gateway_error(status: int, body: str) -> str:
    """``HTTP <status>: <description>`` from a Bandwidth-style error body (or its text)."""
    try:
        description = json.loads(body).get("description")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, too deep
        description = None
    detail = description if isinstance(description, str) else body[:200]
    return f"HTTP {status}: {detail}".rstrip(": ")


class SmsSink(BaseSink[SmsSinkConfig]):
    """Sends each event as a text message, up to ``concurrency`` requests at once."""

    kind = "sms-sink"
    config_type = SmsSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.attempts = 0
        self.sent = 0
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def url(self) -> str:
        return f"{self.config.base_url}/users/{self.config.account_id}/messages"

    async def start(self) -> None:
        if self._session is None:
            config = self.config
            self._slots = asyncio.Semaphore(config.concurrency)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                headers={"Authorization": basic_auth(config.username, config.password)},
                connector=aiohttp.TCPConnector(limit=config.concurrency),
            )

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def write(self, batch: Sequence[Event]) -> None:
        errors = await asyncio.gather(*(self._one(event.value) for event in batch))
        failures = [(index, error) for index, error in enumerate(errors) if error]
        if failures:
            raise RejectedEvents(failures, kind=self.kind)

    async def _one(self, value: Any) -> str | None:
        """Send one event's message; None once the gateway took it, else why not."""
        try:
            body = message_body(value, self.config)
        except NotAMessage as exc:
            return f"not a message: {exc}"
        await self.start()
        assert self._slots is not None
        async with self._slots:
            return await self._send(body)

    async def _send(self, body: dict[str, Any]) -> str | None:
        config = self.config
        error = "not sent"
        for attempt in range(config.retries + 1):
            assert self._session is not None
            self.attempts += 1
            try:
                async with self._session.post(self.url, json=body) as response:
                    text = await response.text(errors="replace")
                    if response.status < 300:
                        self.sent += 1
                        return None
                    error = _gateway_error(response.status, text)
                    if response.status != 429 and response.status < 500:
                        return error  # the request itself is wrong: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = describe(exc)
            if attempt < config.retries:
                ceiling = min(config.backoff_max, config.backoff_initial * 2**attempt)
                await asyncio.sleep(random.uniform(0, ceiling))
        return f"{error} (after {config.retries} retries)"

