"""Topics: named publish/subscribe channels, the same API on every transport.

Every topic has an outbox: a bounded channel of events and commands (subscribe, unsubscribe,
flush) drained in order by one pump task, which hands events to the transport in batches. So
``topic >> f`` followed by ``topic << x`` delivers ``x`` to ``f`` even though neither waits,
``publish`` waits for room in the outbox (not for delivery), and a slow subscriber fills its
queue, then the outbox, then slows its publishers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from time import time_ns
from typing import Any, Generic, Protocol, TypeVar, overload

from eventray._model.errors import (
    ClosedError,
    ConfigError,
    ConnectorError,
    RejectedEvents,
    TopicFull,
)
from eventray._model.event import Event
from eventray._model.protocols import Operator, Source
from eventray._runtime.channel import BatchChannel
from eventray._runtime.tasks import TaskOwner

from .delivery import SubscriptionSpec
from .iteration import TopicIterator
from .protocols import TopicBackend
from .subscriber import Failures, Subscriber

log = logging.getLogger("eventray")

T = TypeVar("T")
U = TypeVar("U")
S = TypeVar("S")

DEFAULT_UNORDERED_CONCURRENCY = 16


class TopicOwner(Protocol):
    """What a topic needs from the bus that owns it."""

    _tasks: TaskOwner

    _closing: bool  # close() began: users' publishes are refused

    async def _ensure_open(self) -> None: ...

    def _adapt_subscriber(
        self, target: object, topic: Topic[Any], *, events: bool
    ) -> tuple[Subscriber, object]: ...

    def _failure_handler(self, topic: str) -> Callable[[Failures, str], Awaitable[None]]: ...

    def _start_feed(self, topic: Topic[Any], source: Source) -> None: ...


class _Command:
    """An action the pump runs in order with the events around it."""

    __slots__ = ("action", "future")

    def __init__(self, action: Callable[[], Awaitable[Any]], future: asyncio.Future[Any]):
        self.action = action
        self.future = future

    async def execute(self) -> None:
        try:
            result = await self.action()
        except asyncio.CancelledError:
            self.fail(ClosedError("the topic closed before this finished"))
            raise
        except Exception as exc:
            self.fail(exc)
        else:
            if not self.future.done():
                self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # mark retrieved: the caller may have stopped waiting


class Topic(Generic[T]):
    """A named channel: publish values, subscribe callables, topics, sinks and operators.

    Get one with ``bus.topic(name)``; the same name is the same topic.
    """

    def __init__(
        self, bus: TopicOwner, name: str, backend: TopicBackend, *, buffer_size: int, max_batch: int
    ) -> None:
        self.name = name
        self._bus = bus
        self._backend = backend
        self._max_batch = max_batch
        self._outbox: BatchChannel[Any] = BatchChannel(buffer_size)
        self._pending_commands = 0
        self._pump: asyncio.Task[None] | None = None
        self._input: Topic[Any] | None = None  # operator topics publish through this
        self._subscriptions: list[Subscription] = []
        self._sources: list[Source] = []
        self._feeding = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Topic {self.name!r}>"

    # publishing

    def __lshift__(self, value: T) -> Topic[T]:
        """Enqueue ``value`` without waiting; raises ``TopicFull`` when the buffer is full."""
        target = self._input or self
        if target._closed or target._bus._closing:
            target._check_accepting()
        if not target._outbox.put_one_nowait(Event(value)):
            raise TopicFull(self.name, len(target._outbox))
        target._ensure_pump()
        return self

    async def publish(
        self,
        value: T,
        *,
        key: Any = None,
        headers: Mapping[str, str] | None = None,
        ts: int | None = None,
    ) -> None:
        """Publish ``value``, waiting for room in the topic's buffer (not for delivery)."""
        target = self._input or self
        if target._closed or target._bus._closing:
            target._check_accepting()
        if target._pump is None:
            target._ensure_pump()
        event = Event(
            value,
            key,
            time_ns() // 1_000_000 if ts is None else ts,
            dict(headers) if headers else None,
        )
        outbox = target._outbox
        while not outbox.put_one_nowait(event):
            await outbox.wait_for_room()
            target._check_accepting()  # a close that began meanwhile takes nothing new

    async def _ingest(self, events: list[Event]) -> None:
        """Publish events as they are (key, headers, time), through the operator if any."""
        await (self._input or self)._publish_events(events)

    async def _publish_events(self, events: list[Event]) -> None:
        self._check_open()
        self._ensure_pump()
        outbox = self._outbox
        if not outbox.put_nowait(events):
            await outbox.put(events)

    # subscribing

    @overload
    def __rshift__(self, subscriber: Topic[U]) -> Topic[U]: ...

    @overload
    def __rshift__(self, subscriber: Operator) -> Topic[Any]: ...

    @overload
    def __rshift__(self, subscriber: S) -> S: ...

    def __rshift__(self, subscriber: Any) -> Any:
        """Subscribe ``subscriber``; returns it (or an operator's topic) so chains work."""
        return self.subscribe(subscriber).target

    def subscribe(
        self,
        subscriber: object,
        *,
        ordered: bool = True,
        max_concurrency: int | None = None,
        name: str | None = None,
        events: bool = False,
    ) -> Subscription:
        """Deliver this topic's events to ``subscriber`` from now on.

        ``subscriber`` may be a sync or async callable, another topic, a sink (or a
        ``{"kind": ...}`` sink config), an ``Operator`` (which gets a topic of its own, returned
        as ``subscription.target``) or a kind the transport knows, such as a Ray actor.
        Delivery keeps publish order unless ``ordered=False``, which runs up to
        ``max_concurrency`` deliveries at once (default 16). Callables get values, or whole
        ``Event``s with ``events=True``. Events a subscriber fails on become dead letters.
        """
        self._check_open()
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ConfigError(
                f"must be a positive int, got {max_concurrency!r}", field="max_concurrency"
            )
        if ordered and max_concurrency not in (None, 1):
            raise ConfigError(
                "ordered delivery is one event at a time; pass ordered=False to run "
                "deliveries concurrently",
                field="max_concurrency",
            )
        adapter, target = self._bus._adapt_subscriber(subscriber, self, events=events)
        concurrency = 1 if ordered else max_concurrency or DEFAULT_UNORDERED_CONCURRENCY
        spec = SubscriptionSpec(
            adapter,
            name or adapter.name,
            self._bus._failure_handler(self.name),
            ordered=ordered,
            max_concurrency=concurrency,
            max_batch=self._max_batch,
        )
        subscription = Subscription(self, spec, target)
        self._subscriptions.append(subscription)
        subscription._ready = self._command(lambda: self._do_subscribe(spec))
        return subscription

    async def _do_subscribe(self, spec: SubscriptionSpec) -> None:
        await self._backend.subscribe(spec)
        if self._sources and not self._feeding:
            self._feeding = True
            for source in self._sources:
                self._bus._start_feed(self, source)

    def _attach_source(self, source: Source) -> None:
        self._sources.append(source)
        if self._feeding:
            self._bus._start_feed(self, source)

    def __aiter__(self) -> TopicIterator[T]:
        """Iterate over values published from now on (until the bus closes)."""
        return TopicIterator(self)

    # flushing

    async def flush(self) -> None:
        """Wait until everything published so far has reached every subscriber.

        Follows forwarding chains: topics subscribed to this one are flushed too, and sinks
        are asked to make what they wrote durable.
        """
        await self._flush(set())

    async def _flush(self, visited: set[Topic[Any]]) -> None:
        if self._input is not None and self._input not in visited:
            await self._input._flush(visited)  # its operator's downstream is this topic
            return
        if self in visited or self._closed:
            return
        visited.add(self)
        await self._command(self._backend.flush)
        for subscription in list(self._subscriptions):
            subscriber = subscription.spec.subscriber
            downstream = subscriber.downstream()
            if downstream is not None:
                await downstream._flush(visited)
            else:
                await subscriber.flush()

    # the pump

    def _command(self, action: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        self._check_open()
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._outbox.put_nowait([_Command(action, future)], force=True)
        self._pending_commands += 1
        self._ensure_pump()
        return future

    def _ensure_pump(self) -> None:
        if self._pump is None:
            self._pump = self._bus._tasks.spawn(self._run_pump(), name=f"topic:{self.name}")

    async def _run_pump(self) -> None:
        await self._bus._ensure_open()
        outbox = self._outbox
        while (items := await outbox.get(self._max_batch)) is not None:
            if not self._pending_commands:
                await self._hand_over(items)
            else:
                run: list[Event] = []
                for item in items:
                    if type(item) is _Command:
                        if run:
                            await self._hand_over(run)
                            run = []
                        self._pending_commands -= 1
                        await item.execute()
                    else:
                        run.append(item)
                if run:
                    await self._hand_over(run)
            outbox.task_done(len(items))

    async def _hand_over(self, batch: list[Event]) -> None:
        failures: Failures
        try:
            await self._backend.publish(batch)
            return
        except RejectedEvents as exc:  # only these: the transport published the rest
            failures = [(batch[index], ConnectorError(error, kind=exc.kind))
                        for index, error in exc.failures if 0 <= index < len(batch)]
        except Exception as exc:
            failures = [(event, exc) for event in batch]
        if failures:
            try:
                await self._bus._failure_handler(self.name)(failures, f"topic:{self.name}")
            except Exception:
                log.exception("topic %r: %d event(s) the transport refused are dropped; "
                              "reporting them failed", self.name, len(batch))

    # lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"topic {self.name!r} is closed")

    def _check_accepting(self) -> None:
        """A user's publish: refused once the bus began to close (stages and subscribers
        still publish while it drains, through ``_publish_events``)."""
        self._check_open()
        if self._bus._closing:
            raise ClosedError(f"the bus is closing; topic {self.name!r} takes no new events")

    async def _drain(self) -> None:
        """Close the outbox and wait for the pump to hand everything over."""
        self._outbox.close()
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)

    async def _close(self) -> None:
        self._closed = True
        for item in self._outbox.take_all():
            if type(item) is _Command:
                item.fail(ClosedError(f"topic {self.name!r} closed"))
        self._outbox.abandon()
        for subscription in self._subscriptions:
            subscription._active = False
        self._subscriptions.clear()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self._backend.close()


class Subscription:
    """A subscriber attached to a topic; ``await cancel()`` detaches it."""

    def __init__(self, topic: Topic[Any], spec: SubscriptionSpec, target: object) -> None:
        self.topic = topic
        self.spec = spec
        self.target = target
        self._active = True
        self._ready: asyncio.Future[Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        return self._active

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} on {self.topic.name!r}>"

    async def ready(self) -> None:
        """Wait until the transport has registered this subscription."""
        if self._ready is not None:
            await self._ready

    async def cancel(self, *, drain: bool = True) -> None:
        """Stop delivery. With ``drain`` events already queued for it are delivered first."""
        if not self._active:
            return
        self._active = False
        topic = self.topic
        if self in topic._subscriptions:
            topic._subscriptions.remove(self)
        if topic._closed:
            return
        await topic._command(lambda: topic._backend.unsubscribe(self.spec, drain=drain))

    def _detach_soon(self) -> None:
        """Cancel without waiting (from a finalizer); dropped if there is no loop."""
        if not self._active or self.topic._closed:
            self._active = False
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._active = False
        if self in self.topic._subscriptions:
            self.topic._subscriptions.remove(self)
        spec = self.spec
        backend = self.topic._backend
        self.topic._command(lambda: backend.unsubscribe(spec, drain=False))
