"""The topic actor: one named async Ray actor per topic, shared by every process on the cluster.

Publishers call ``publish(batch)``, which returns once every subscription's bounded queue had
room (backpressure crosses processes this way). Subscribers in a Python process pull batches
(``pull``); Ray actor and task subscribers are called from here (``subscribe_remote``).
``flush`` waits until every subscription has taken everything published before it. Events
travel as column ``Batch``es, queues count batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray

from eventray import ClosedError, DeadLetter, Event
from eventray.spi import Batch, BatchChannel, TaskOwner, now_ms

from ._sequencer import Sequencer
from ._targets import Outcome, Target
from ._wire import Wire, land

log = logging.getLogger("eventray")

DEAD_LETTERS = "dead-letters"


def topic_actor_name(topic: str) -> str:
    return f"topic:{topic}"


def dead_letter_batch(letters: list[DeadLetter]) -> Batch:
    """Dead letters as the batch published to the dead-letter topic."""
    return Batch.from_events([Event(d, d.key, d.ts or now_ms()) for d in letters])


@dataclass
class _Subscription:
    name: str
    channel: BatchChannel[Wire]
    task: asyncio.Task[None] | None = None  # remote deliveries run here
    last_pull: float = field(default_factory=time.monotonic)
    events_put: int = 0


class TopicActor:
    """The remote half of a topic (run as a Ray actor)."""

    def __init__(self, topic: str, namespace: str, creator: str, queue_batches: int,
                 stale_after: float = 60.0) -> None:
        self.topic = topic
        self.namespace = namespace
        self._creator = creator
        self.queue_batches = queue_batches
        self.stale_after = stale_after
        self.subscriptions: dict[str, _Subscription] = {}
        self.tasks = TaskOwner(f"topic-actor:{topic}")
        self.published = 0
        self._order = Sequencer()

    def creator(self) -> str:
        return self._creator

    async def publish(self, batch: Wire, sender: str | None = None, seq: int = 0) -> None:
        """Offer ``batch`` to every subscription; calls of one ``sender`` (numbered by
        ``seq``) are applied in order even when several are in flight."""
        if sender is not None:
            await self._order.wait_turn(sender, seq)
        try:
            self.published += len(batch)
            for key, subscription in list(self.subscriptions.items()):
                await self._offer(key, subscription, batch)
        finally:
            if sender is not None:
                self._order.done(sender, seq)

    async def _offer(self, key: str, subscription: _Subscription, batch: Wire) -> None:
        """Put ``batch`` in one queue, waiting for room; a puller that stopped pulling for
        ``stale_after`` seconds while its queue is full is presumed gone and dropped."""
        channel = subscription.channel
        while True:
            try:
                if not channel.put_nowait([batch]):
                    async with asyncio.timeout(self.stale_after):
                        await channel.put([batch])
                subscription.events_put += len(batch)
                return
            except ClosedError:
                return
            except TimeoutError:
                idle = time.monotonic() - subscription.last_pull
                if subscription.task is None and idle >= self.stale_after:
                    log.warning("topic %r: subscriber %s has not pulled for %.0fs; dropped",
                                self.topic, subscription.name, idle)
                    self._drop(key)
                    return

    def _drop(self, key: str) -> None:
        subscription = self.subscriptions.pop(key, None)
        if subscription is not None:
            subscription.channel.abandon()
            if subscription.task is not None:
                subscription.task.cancel()

    async def subscribe_pull(self, key: str, name: str) -> None:
        """Subscribe puller ``key``; pullers sharing a key share its queue (a group)."""
        if key not in self.subscriptions:
            self.subscriptions[key] = _Subscription(name, BatchChannel(self.queue_batches))

    async def pull(self, key: str, max_batches: int) -> list[Wire] | None:
        subscription = self.subscriptions.get(key)
        if subscription is None:
            return None
        subscription.last_pull = time.monotonic()
        batches = await subscription.channel.get(max_batches)
        subscription.last_pull = time.monotonic()
        if batches is None:
            self.subscriptions.pop(key, None)
            return None
        subscription.channel.task_done(len(batches))
        return batches

    async def subscribe_remote(self, key: str, name: str, target: Target) -> None:
        channel: BatchChannel[Wire] = BatchChannel(self.queue_batches)
        subscription = _Subscription(name, channel)
        subscription.task = self.tasks.spawn(self._deliver(channel, target, name), name=name)
        self.subscriptions[key] = subscription

    async def _deliver(self, channel: BatchChannel[Wire], target: Target, name: str) -> None:
        """Hand batches to ``target`` in order, up to ``target.batches_in_flight`` started
        before the oldest has settled (never leaving one unsettled while the queue is
        empty, so ``flush`` sees it done)."""
        pending: deque[tuple[Wire, Outcome]] = deque()
        while True:
            if pending and (len(pending) >= target.batches_in_flight or not len(channel)):
                wire, outcome = pending.popleft()
                failures = await outcome
                if failures:
                    await self._dead_letters(wire, failures, name)
                channel.task_done(1)
                continue
            batches = await channel.get(1)
            if batches is None:
                return
            pending.append((batches[0], target.start(batches[0])))

    async def _dead_letters(self, wire: Wire, failures: list[tuple[int, str]],
                            stage: str) -> None:
        batch = await land(wire)
        log.warning("%s failed on %d event(s), first: %s", stage, len(failures), failures[0][1])
        letters = [DeadLetter(batch.values[i], error, stage, batch.key_at(i), batch.ts_at(i))
                   for i, error in failures]
        try:
            handle = ray.get_actor(topic_actor_name(DEAD_LETTERS), namespace=self.namespace)
        except ValueError:
            return  # nobody ever used the dead-letter topic: nobody is listening
        await handle.publish.remote(dead_letter_batch(letters))

    async def unsubscribe(self, key: str, drain: bool) -> None:
        subscription = self.subscriptions.get(key)
        if subscription is None:
            return
        if not drain:
            self._drop(key)
            if subscription.task is not None:
                await asyncio.gather(subscription.task, return_exceptions=True)
            return
        subscription.channel.close()  # a puller takes what is left, then gets None
        if subscription.task is not None:
            self.subscriptions.pop(key, None)
            await asyncio.gather(subscription.task, return_exceptions=True)

    async def flush(self) -> dict[str, int]:
        """Wait until every subscription took what was published so far; return, per
        subscription, how many events that was."""
        marks = {key: (s.channel.put_total, s.events_put)
                 for key, s in self.subscriptions.items()}
        for key, (batches, _) in marks.items():
            subscription = self.subscriptions.get(key)
            if subscription is not None:
                await subscription.channel.join(batches)
        return {key: events for key, (_, events) in marks.items()}

    def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "subscriptions": {s.name: len(s.channel) for s in self.subscriptions.values()},
        }

    async def close(self) -> None:
        await self.tasks.aclose()
