"""``http-sink`` and ``slack-sink``: requests with bounded retries, pooled connections.

5xx answers, 429, timeouts and refused connections are retried with exponential backoff and
jitter (a ``Retry-After`` answer is honoured, up to ``max_retry_after``); any other 4xx, or a
request still failing after ``retries`` retries, makes its events dead letters through
``RejectedEvents`` while the rest of the batch counts as delivered.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from eventray import BaseSink, Event, RejectedEvents
from eventray.spi import describe

from ._config import HttpSinkConfig, SlackSinkConfig
from ._formats import encode


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, cap))


class _Requests:
    """One pooled session and the retry policy shared by the HTTP sinks."""

    def __init__(self, *, timeout: float, retries: int, backoff_initial: float,
                 backoff_max: float, max_retry_after: float, connections: int) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None
        self.attempts = 0

    @classmethod
    def of(cls, config: HttpSinkConfig | SlackSinkConfig, connections: int) -> _Requests:
        """The retry policy a sink's config sets."""
        return cls(timeout=config.timeout, retries=config.retries,
                   backoff_initial=config.backoff_initial, backoff_max=config.backoff_max,
                   max_retry_after=config.max_retry_after, connections=connections)

    async def open(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.connections),
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """Make the request, retrying what may succeed later; None on success, else why not."""
        await self.open()
        assert self.session is not None
        error = "not sent"
        for attempt in range(self.retries + 1):
            self.attempts += 1
            wait: float | None = None
            try:
                async with self.session.request(method, url, data=body,
                                                headers=headers) as response:
                    text = (await response.text(errors="replace"))[:200]
                    if response.status < 300:
                        return None
                    error = f"HTTP {response.status}: {text}".rstrip(": ")
                    if response.status != 429 and response.status < 500:
                        return error  # the request itself is wrong: retrying will not help
                    wait = retry_after(response.headers.get("Retry-After"),
                                       self.max_retry_after)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = describe(exc)
            if attempt < self.retries:
                if wait is None:
                    ceiling = min(self.backoff_max, self.backoff_initial * 2**attempt)
                    wait = random.uniform(0, ceiling)
                await asyncio.sleep(wait)
        return f"{error} (after {self.retries} retries)"


class HttpSink(BaseSink[HttpSinkConfig]):
    """Sends each event (or, with ``batch=True``, each batch as a JSON array) to ``url``,
    up to ``concurrency`` requests at once."""

    kind = "http-sink"
    config_type = HttpSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.requests = _Requests.of(self.config, self.config.concurrency)
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.config.concurrency)
        await self.requests.open()

    async def stop(self) -> None:
        await self.requests.close()

    async def _one(self, value: Any) -> str | None:
        body, content_type = encode(value)
        if self._slots is None:
            await self.start()
        assert self._slots is not None
        async with self._slots:
            return await self.requests.send(self.config.method, self.config.url, body,
                                            {"Content-Type": content_type,
                                             **self.config.headers})

    async def write(self, batch: Sequence[Event]) -> None:
        if self.config.batch:
            error = await self._one([event.value for event in batch])
            failures = [(i, error) for i in range(len(batch))] if error else []
        else:
            errors = await asyncio.gather(*(self._one(event.value) for event in batch))
            failures = [(i, error) for i, error in enumerate(errors) if error]
        if failures:
            raise RejectedEvents(failures, kind=self.kind)


def slack_text(value: Any) -> str:
    """The message text for an event value: its ``text`` if it has one, else the value."""
    text = value.get("text") if isinstance(value, dict) else value
    return text if isinstance(text, str) else str(value)


class SlackSink(BaseSink[SlackSinkConfig]):
    """Posts ``{"channel": channel, "text": ...}`` per event to a Slack incoming webhook,
    one at a time and in order; 429 answers are retried after their ``Retry-After``."""

    kind = "slack-sink"
    config_type = SlackSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.requests = _Requests.of(self.config, connections=1)

    async def start(self) -> None:
        await self.requests.open()

    async def stop(self) -> None:
        await self.requests.close()

    async def write(self, batch: Sequence[Event]) -> None:
        failures = []
        for index, event in enumerate(batch):
            payload: dict[str, Any] = {"text": slack_text(event.value)}
            if self.config.channel:
                payload["channel"] = self.config.channel
            body, content_type = encode(payload)
            error = await self.requests.send("POST", self.config.webhook_url, body,
                                             {"Content-Type": content_type})
            if error:
                failures.append((index, error))
        if failures:
            raise RejectedEvents(failures, kind=self.kind)
