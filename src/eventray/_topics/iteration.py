"""Reading a topic from code: ``async for value in topic`` and the batch-at-a-time stream
that ``from_topic`` stages read. Both are subscriptions feeding a bounded buffer, dropped
(unsubscribed) when the reader goes away."""

from __future__ import annotations

import weakref
from collections import deque
from typing import Generic, Protocol, TypeVar

from eventray._model.batch import Batch
from eventray._model.errors import ClosedError
from eventray._model.event import Event
from eventray._runtime.channel import BatchChannel

from .subscriber import Subscriber

T = TypeVar("T")


class _Subscription(Protocol):
    async def ready(self) -> None: ...

    async def cancel(self, *, drain: bool = True) -> None: ...

    def _detach_soon(self) -> None: ...


class _Subscribable(Protocol):
    """A topic, as an iterator sees it."""

    def subscribe(self, subscriber: object, *, name: str | None = None) -> _Subscription: ...


class _ChannelSubscriber(Subscriber):
    """Feeds a topic iterator's bounded channel."""

    def __init__(self, channel: BatchChannel[Event]) -> None:
        self.channel = channel
        self.name = "iterator"

    async def deliver(self, batch: list[Event]) -> list[tuple[Event, BaseException]]:
        try:
            await self.channel.put(batch)
        except ClosedError:
            pass  # the iterator went away
        return []

    async def close(self) -> None:
        self.channel.close()


def _abandon(channel: BatchChannel[Event], subscription: _Subscription) -> None:
    channel.abandon()
    subscription._detach_soon()


class TopicStream:
    """A subscription feeding a bounded buffer that is read a batch at a time.

    Dropping it unsubscribes (also done by ``aclose()``); the buffer ends when the bus closes.
    """

    def __init__(self, topic: _Subscribable, buffer_size: int = 1000,
                 name: str = "iterator") -> None:
        self._channel: BatchChannel[Event] = BatchChannel(buffer_size)
        self._subscription = topic.subscribe(_ChannelSubscriber(self._channel), name=name)
        self._finalizer = weakref.finalize(self, _abandon, self._channel, self._subscription)

    async def ready(self) -> None:
        """Wait until the subscription is registered with the transport."""
        await self._subscription.ready()

    async def get(self, max_items: int) -> list[Event] | None:
        """Up to ``max_items`` events, waiting for one; None once the topic closed."""
        return await self._channel.get(max_items)

    def task_done(self, count: int) -> None:
        self._channel.task_done(count)

    async def get_batch(self, max_items: int) -> Batch | None:
        """Like ``get`` (and marked done), as one column batch."""
        events = await self._channel.get(max_items)
        if events is None:
            return None
        self._channel.task_done(len(events))
        return Batch.from_events(events)

    async def finish(self) -> None:
        """Unsubscribe at once (what the topic still queued for this stream is not taken);
        what was already delivered stays readable, then ``get`` ends."""
        self._finalizer.detach()
        await self._subscription.cancel(drain=False)
        self._channel.close()

    async def aclose(self) -> None:
        """Unsubscribe."""
        self._finalizer.detach()
        self._channel.abandon()
        await self._subscription.cancel(drain=False)


class TopicIterator(Generic[T]):
    """``async for value in topic``: values published from now on, until the bus closes.

    Leaving the loop early (or ``aclose()``) unsubscribes.
    """

    def __init__(self, topic: _Subscribable, buffer_size: int = 1000) -> None:
        self._stream = TopicStream(topic, buffer_size)
        self._pending: deque[Event] = deque()

    def __aiter__(self) -> TopicIterator[T]:
        return self

    async def __anext__(self) -> T:
        if not self._pending:
            batch = await self._stream.get(1000)
            if batch is None:
                raise StopAsyncIteration
            self._pending.extend(batch)
            self._stream.task_done(len(batch))
        value: T = self._pending.popleft().value
        return value

    async def aclose(self) -> None:
        """Unsubscribe and stop iterating."""
        await self._stream.aclose()

    async def __aenter__(self) -> TopicIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
