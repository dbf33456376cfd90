"""The driver side of Ray topics: publishing to the topic actor, pulling for local
subscribers, and registering Ray actor and task subscribers with the actor."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError

from eventray import DeadLetter, Event, SubscriptionSpec, TransportError
from eventray.spi import Batch, BatchChannel, TaskOwner, concat, deliver_from

from ._errors import ray_errors
from ._subscribers import RemoteSubscriber
from ._targets import error_text
from ._topic_actor import DEAD_LETTERS, dead_letter_batch
from ._wire import Wire, land, ship

log = logging.getLogger("eventray")

PULL_BATCHES = 4  # batches taken per pull call


class PullStream:
    """A pull subscription to a topic actor: ``get`` returns the next batch, None at the end.

    Used by the driver for local subscribers and by stage actors reading a topic. The end is
    only ever a drained unsubscription: a topic actor that died is a ``TransportError``.
    While subscribed, an ``attend`` call stays open on the topic actor, which tells it this
    process is alive (see ``TopicActor.watch``).
    """

    def __init__(self, handle: Any, key: str, name: str) -> None:
        self.handle = handle
        self.key = key
        self.name = name
        self._pulling: Any = None  # a pull call whose result nobody has taken yet
        self._rest: Batch | None = None  # pulled, beyond what the last caller asked for
        self._attending: Any = None
        self.puller = uuid.uuid4().hex  # this process's pulls, for the topic actor

    async def open(self) -> PullStream:
        with ray_errors(f"subscribing {self.name}"):
            await self.handle.subscribe_pull.remote(self.key, self.name)
            self._attending = self.handle.attend.remote(self.key)
            await self.handle.watch.remote(self.key, [self._attending], self.puller)
        return self

    async def get_batch(self, max_items: int) -> Batch | None:
        """Up to ``max_items`` events (what a pull brought beyond that is kept for the next
        call), as one batch; None at the end.

        Safe to cancel: a pull the topic actor already answered is kept and returned by the
        next call, so cancelling a wait (a timeout, a drain) loses nothing.
        """
        batch = self._rest
        self._rest = None
        if batch is None:
            if self._pulling is None:
                self._pulling = self.handle.pull.remote(self.key, PULL_BATCHES, self.puller)
            with ray_errors(f"{self.name}: the topic's actor failed"):
                try:
                    items: list[Wire] | None = await self._pulling
                except asyncio.CancelledError:
                    raise  # the pull stays pending, for the next call
                except BaseException:
                    self._pulling = None
                    raise
                self._pulling = None
                if not items:
                    return None
                batch = concat([await land(item) for item in items])
        if len(batch) > max_items:
            batch, self._rest = split(batch, max_items)
        return batch

    async def get(self, max_items: int) -> list[Event] | None:
        batch = await self.get_batch(max_items)
        return batch.to_events() if batch is not None else None

    def task_done(self, count: int) -> None:
        """Pulled is done, as far as the topic actor counts."""

    async def finish(self) -> None:
        """Unsubscribe at once: what was pulled stays; what the topic queued is not taken."""
        await self._unsubscribe(drain=False)

    async def aclose(self) -> None:
        await self._unsubscribe(drain=False)

    async def _unsubscribe(self, *, drain: bool) -> None:
        if not ray.is_initialized():  # detached (the cluster is gone): a call would start Ray
            return
        try:
            await self.handle.unsubscribe.remote(self.key, drain)
            if not drain and self._attending is not None:
                await self._attending  # ended by the unsubscription
        except RayError as exc:  # the actor is gone: nothing is left to unsubscribe from
            log.debug("%s: unsubscribing from a gone topic actor: %s", self.name, exc)


def split(batch: Batch, size: int) -> tuple[Batch, Batch]:
    """The first ``size`` events of ``batch``, and the rest."""
    def cut(column: list[Any] | None, part: slice) -> list[Any] | None:
        return None if column is None else column[part]

    head, tail = slice(None, size), slice(size, None)
    return (Batch(batch.values[head], cut(batch.keys, head), cut(batch.ts, head),
                  cut(batch.headers, head)),
            Batch(batch.values[tail], cut(batch.keys, tail), cut(batch.ts, tail),
                  cut(batch.headers, tail)))


@dataclass
class _Local:
    stream: PullStream
    channel: BatchChannel[Event]
    pulling: asyncio.Task[None]
    delivering: asyncio.Task[None]


class RayTopicBackend:
    """One topic on Ray, as seen from this process."""

    def __init__(self, name: str, actor: Callable[[str], Awaitable[Any]], instance: str,
                 tasks: TaskOwner, queue_size: int, publish_window: int = 2,
                 check: Callable[[], None] = lambda: None) -> None:
        """``queue_size`` bounds, in events, the local queue of each subscriber here;
        ``check`` raises if the cluster is gone."""
        self.name = name
        self._check = check
        self._get_actor = actor
        self._instance = instance
        self._tasks = tasks
        self._queue_size = queue_size
        self._handle: Any = None
        self._local: dict[int, _Local] = {}
        self._remote: dict[int, str] = {}
        self._sender = f"{instance}:{name}"
        self._seq = 0
        self._publish_window = publish_window
        self._in_flight: deque[tuple[list[Event], Any]] = deque()
        self._failure: TransportError | None = None  # a local subscriber's pulling failed

    async def actor(self) -> Any:
        """The topic actor, created on first use (or found, if another process made it)."""
        self._check()
        if self._handle is None:
            self._handle = await self._get_actor(self.name)
        return self._handle

    def _key(self, spec: SubscriptionSpec) -> str:
        return f"{self._instance}:{spec.id}"

    async def publish(self, batch: list[Event]) -> None:
        """Send ``batch``, keeping up to ``publish_window`` calls in flight (the topic actor
        puts them back in order)."""
        handle = await self.actor()
        while len(self._in_flight) >= self._publish_window:
            await self._settle_oldest()
        wire = await ship(Batch.from_events(batch))
        self._in_flight.append((batch, handle.publish.remote(wire, self._sender, self._seq)))
        self._seq += 1

    async def _settle_oldest(self) -> None:
        batch, ref = self._in_flight.popleft()
        try:
            await ref
        except Exception as exc:
            await self._lost(batch, exc)

    async def _lost(self, batch: list[Event], error: Exception) -> None:
        """A publish call failed (the topic actor died): its events become dead letters."""
        text = error_text(error)
        log.error("topic %r: %d event(s) not delivered: %s", self.name, len(batch), text)
        if self.name == DEAD_LETTERS:
            return
        letters = [DeadLetter(e.value, text, f"topic:{self.name}", e.key, e.ts) for e in batch]
        try:
            await (await self._get_actor(DEAD_LETTERS)).publish.remote(dead_letter_batch(letters))
        except Exception as exc:
            log.error("dead letters of topic %r lost too: %s", self.name, error_text(exc))

    async def _settle_all(self) -> None:
        """Wait for every publish call in flight: the topic actor is async, so a later call
        of another kind (subscribe, unsubscribe, flush) could otherwise overtake them."""
        while self._in_flight:
            await self._settle_oldest()

    async def subscribe(self, spec: SubscriptionSpec) -> None:
        handle = await self.actor()
        await self._settle_all()
        key = self._key(spec)
        subscriber = spec.subscriber
        if isinstance(subscriber, RemoteSubscriber):
            await handle.subscribe_remote.remote(key, spec.name, subscriber.target)
            self._remote[spec.id] = key
            return
        stream = await PullStream(handle, key, spec.name).open()
        channel: BatchChannel[Event] = BatchChannel(self._queue_size)
        self._local[spec.id] = _Local(
            stream,
            channel,
            self._tasks.spawn(self._pull(stream, channel, spec.max_batch),
                              name=f"pull:{self.name}:{spec.name}"),
            self._tasks.spawn(deliver_from(channel, spec), name=f"{self.name}>{spec.name}"),
        )

    async def _pull(self, stream: PullStream, channel: BatchChannel[Event],
                    max_batch: int) -> None:
        try:
            while (items := await stream.get(max_batch)) is not None:
                await channel.put(items)
        except TransportError as exc:
            self._failure = self._failure or exc
            raise  # logged by the task owner; flush() raises it
        finally:
            channel.close()

    async def unsubscribe(self, spec: SubscriptionSpec, *, drain: bool) -> None:
        self._check()
        await self._settle_all()
        key = self._remote.pop(spec.id, None)
        if key is not None:
            handle = await self.actor()
            await handle.unsubscribe.remote(key, drain)
            return
        local = self._local.pop(spec.id, None)
        if local is None:
            return
        if drain:
            await local.stream.finish()
        else:
            local.pulling.cancel()
            local.delivering.cancel()
            local.channel.abandon()
            await local.stream.aclose()
        await asyncio.gather(local.pulling, local.delivering, return_exceptions=True)

    async def flush(self) -> None:
        handle = await self.actor()
        await self._settle_all()
        if self._failure is not None:
            raise self._failure
        with ray_errors(f"flushing topic {self.name!r}"):
            targets: dict[str, int] = await handle.flush.remote()
        for local in list(self._local.values()):
            target = targets.get(local.stream.key)
            if target is not None:
                await local.channel.join(target)

    async def close(self) -> None:
        try:
            self._check()
        except TransportError:  # the cluster is gone: there is nothing left to tell it
            self._handle = None
        try:
            async with asyncio.timeout(5):
                await self._settle_all()
        except TimeoutError:
            log.warning("topic %r: publish calls still in flight at close", self.name)
        locals_ = list(self._local.values())
        self._local.clear()
        for local in locals_:
            local.pulling.cancel()
            local.delivering.cancel()
            local.channel.abandon()
        await asyncio.gather(*(t for lo in locals_ for t in (lo.pulling, lo.delivering)),
                             return_exceptions=True)
        if self._handle is not None:
            keys = [local.stream.key for local in locals_] + list(self._remote.values())
            self._remote.clear()
            try:
                async with asyncio.timeout(5):
                    for key in keys:
                        await self._handle.unsubscribe.remote(key, False)
            except (RayError, TimeoutError) as exc:
                # the actor is gone, or busy: it drops the pullers of this process once the
                # process exits
                log.warning("topic %r: unsubscribing at close failed: %s", self.name,
                            error_text(exc))
