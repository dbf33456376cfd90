"""``PollingSource``: the shared loop of sources that ask a service for news periodically."""

from __future__ import annotations

import asyncio
import logging
import random
from abc import abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any, TypeVar

from eventray._model.event import Event, describe

from .base import BaseSource, ConnectorConfig

log = logging.getLogger("eventray")

C = TypeVar("C", bound=ConnectorConfig)


class PollingSource(BaseSource[C]):
    """A source that calls ``poll()`` every ``interval`` seconds.

    A failing poll (an exception or a timeout after ``poll_timeout``) never ends the source:
    the next attempt waits an exponential backoff from ``backoff_initial`` up to
    ``backoff_max`` seconds, with full jitter, and a success resets it. Subclasses implement
    ``poll`` and may override ``interval`` (for example from a ``period`` field) and
    ``close`` (called by ``stop``).

    ``empty_reads = True``: a poll that brings nothing (or fails) ends the ``read`` with an
    empty batch instead of polling on inside it, so a checkpoint (which a stage takes between
    reads) never waits longer than one interval or backoff: the choice of a source whose
    position moves with its reads (one that acknowledges upstream once a checkpoint is
    durable) while its service is quiet or down.
    """

    interval: float = 1.0
    empty_reads: bool = False
    poll_timeout: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.polls = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._buffer: deque[Event] = deque()
        self._next_poll: float | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None  # made on first use: sources may be pickled

    @abstractmethod
    async def poll(self) -> Sequence[Any]:
        """One request to the service: the new values or events (possibly none)."""

    async def close(self) -> None:
        """Release what ``poll`` uses (sessions, connections)."""

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (full jitter)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
        return random.uniform(0, ceiling)

    def stop_reading(self) -> None:
        """A drain: a poll in progress completes and its events are delivered; the wait for
        the next poll ends at once; then ``read`` returns what is buffered, then None."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def read(self, max_events: int) -> Sequence[Event] | None:
        while not self._buffer:
            if self._stopping:
                return None
            await self._poll_once()
            if self.empty_reads and not self._buffer:
                return []
        count = min(max_events, len(self._buffer))
        return [self._buffer.popleft() for _ in range(count)]

    async def _poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next_poll is not None:
            delay = self._next_poll - loop.time()
            if delay > 0:
                if self._wake is None:
                    self._wake = asyncio.Event()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
                if self._stopping:
                    return
        started = loop.time()
        self.polls += 1
        try:
            async with asyncio.timeout(self.poll_timeout):
                values = await self.poll()
        except Exception as exc:  # a failing service must not end the stream
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = describe(exc)
            wait = self.backoff(self.consecutive_failures)
            log.warning(
                "%s: poll failed (%s); retrying in %.2fs", self.kind, self.last_error, wait
            )
            self._next_poll = loop.time() + wait
            return
        self.consecutive_failures = 0
        self._next_poll = started + self.interval
        for value in values:
            self._buffer.append(value if isinstance(value, Event) else Event(value))

    async def stop(self) -> None:
        await self.close()
