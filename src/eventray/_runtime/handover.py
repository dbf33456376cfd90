"""``HandoverQueue``: a server-style source answers a request only once the stream took it.

A source that receives requests (a webhook POST, an SMTP message, an SMS callback) must not
say "accepted" before its events are safe: ``offer`` queues a request's events and waits until
the source's ``read`` took them, so the server answers yes (2xx, 250) only then and no
(503, 421, ...) otherwise, and the client retries what was refused. Each request is decided
once: taken by ``take`` or refused (timed out, closed, ``refuse_queued``); a refused request's
events still queued are skipped, so nothing is handed over after its request was refused and
nothing twice. What the answers are, and what a drain does, stays the source's choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Generic, TypeVar

from eventray._model.errors import ClosedError

from .channel import BatchChannel

T = TypeVar("T")


class _Request:
    """One request's ``size`` items; ``taken`` is decided once: True when ``take`` took them,
    False (or cancelled, by a timeout) when the request was refused."""

    __slots__ = ("size", "taken")

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def accept(self) -> bool:
        """Take the items unless the request was refused; whether they go out."""
        if not self.taken.done():
            self.taken.set_result(True)
        return not self.taken.cancelled() and self.taken.result()

    def refuse(self) -> bool:
        """Refuse the request unless its items were taken; whether it was refused."""
        if not self.taken.done():
            self.taken.set_result(False)
        return self.taken.cancelled() or not self.taken.result()


class HandoverQueue(Generic[T]):
    """A bounded queue of requests' items (events) between a server and a source's ``read``.

    At most ``max_pending`` items wait (plus one request's: a request is queued whole).
    ``offer`` is what a request handler awaits; ``take`` is what ``read`` returns; ``close``
    ends the queue (``take`` hands over what is queued, then returns None) and
    ``refuse_queued`` refuses what the stream has not taken yet.
    """

    def __init__(self, max_pending: int) -> None:
        self._channel: BatchChannel[tuple[_Request, T]] = BatchChannel(max_pending)

    def __len__(self) -> int:
        """Items waiting for ``take``."""
        return len(self._channel)

    @property
    def closed(self) -> bool:
        """``close`` was called: new offers are refused."""
        return self._channel.closed

    # the timeout is a parameter, not the caller's ``asyncio.timeout``: items taken as the
    # deadline passes must count as taken, which only the offer itself can tell
    async def offer(self, items: Sequence[T], timeout: float | None) -> bool:  # noqa: ASYNC109
        """Queue one request's ``items`` and wait until ``take`` took them: True. False when
        they were refused: not taken within ``timeout`` seconds (waiting for room counts),
        the queue was closed before they were queued, or ``refuse_queued`` refused them.
        Items taken as the deadline passes count as taken. No items: True at once."""
        if not items:
            return True
        request = _Request(len(items))
        try:
            async with asyncio.timeout(timeout):
                await self._channel.put([(request, item) for item in items])
                await request.taken
        except (TimeoutError, ClosedError):
            pass
        finally:  # also when cancelled: the items left in the queue are then skipped
            refused = request.refuse()
        return not refused

    async def take(self, max_items: int) -> list[T] | None:
        """Wait for items; return those of whole requests, at most ``max_items`` unless one
        request has more (it is taken whole), and answer their offers True. Items of refused
        requests are skipped (the result may be empty). None once closed and empty."""
        pairs = await self._channel.get(max_items)
        if pairs is None:
            return None
        last = pairs[-1][0]
        rest = last.size - sum(1 for request, _ in pairs if request is last)
        if rest:  # the rest of the last request is next in the channel: take it now
            pairs = [*pairs, *(await self._channel.get(rest) or [])]
        self._channel.task_done(len(pairs))
        return [item for request, item in pairs if request.accept()]

    def refuse_queued(self) -> None:
        """Refuse every request whose items are still queued: their offers return False."""
        for request, _ in self._channel.take_all():
            request.refuse()

    def close(self) -> None:
        """Refuse new offers (and those still waiting for room); what is queued may still be
        taken, then ``take`` returns None. Idempotent."""
        self._channel.close()
