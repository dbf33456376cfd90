"""Reading a topic from code: ``async for value in topic`` and the batch-at-a-time stream
that ``from_topic`` stages read. Both are subscriptions feeding a bounded buffer, dropped
(unsubscribed) when the reader goes away."""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, Generic, TypeVar

from ._adapters import Subscriber
from ._batch import Batch
from ._channel import BatchChannel
from ._errors import ClosedError
from ._event import Event
from ._topic import Subscription, Topic

T = TypeVar("T")


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


def _abandon(channel: BatchChannel[Event], subscription: Subscription) -> None:
    channel.abandon()
    subscription._detach_soon()


class TopicStream:
    """A subscription feeding a bounded buffer that is read a batch at a time.

    Dropping it unsubscribes (also done by ``aclose()``); the buffer ends when the bus closes.
    """

    def __init__(self, topic: Topic[Any], buffer_size: int = 1000,
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
        """Unsubscribe; what was already delivered stays readable, then ``get`` ends."""
        self._finalizer.detach()
        await self._subscription.cancel(drain=True)
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

    def __init__(self, topic: Topic[T], buffer_size: int = 1000) -> None:
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
