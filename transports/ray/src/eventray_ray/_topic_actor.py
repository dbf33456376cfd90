"""The topic actor: one named async Ray actor per topic, shared by every process on the cluster.

Publishers call ``publish(batch)``, which returns once every subscription's bounded queue had
room (backpressure crosses processes this way): a slow subscriber slows its publishers, and is
never dropped for being slow. A puller is removed only when its process dies: it keeps an
``attend`` call open here and hands this actor the reference to that call's result, which the
puller's process owns, so Ray fails it (``OwnerDiedError``) once that process is gone.
Subscribers in a Python process pull batches (``pull``); Ray actor and task subscribers are
called from here (``subscribe_remote``). ``flush`` waits until every subscription has taken
everything published before it. Events travel as column ``Batch``es, queues count batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError

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
    events_put: int = 0
    left: asyncio.Event = field(default_factory=asyncio.Event)  # ends the puller's attend
    pullers: int = 0  # the processes pulling from it (a group shares one subscription)


class TopicActor:
    """The remote half of a topic (run as a Ray actor)."""

    def __init__(self, topic: str, namespace: str, creator: str, queue_batches: int) -> None:
        self.topic = topic
        self.namespace = namespace
        self._creator = creator
        self.queue_batches = queue_batches
        self._dead_letter_topic: Any = None
        self.subscriptions: dict[str, _Subscription] = {}
        self._waiting_pulls: dict[str, asyncio.Task[Any]] = {}  # puller -> its waiting pull
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
            for subscription in list(self.subscriptions.values()):
                await self._offer(subscription, batch)
        finally:
            if sender is not None:
                self._order.done(sender, seq)

    async def _offer(self, subscription: _Subscription, batch: Wire) -> None:
        """Put ``batch`` in one queue, waiting for room for as long as its subscriber lives."""
        try:
            await subscription.channel.put([batch])
        except ClosedError:
            return  # unsubscribed, or its process died, while we waited
        subscription.events_put += len(batch)

    def _drop(self, key: str) -> None:
        subscription = self.subscriptions.pop(key, None)
        if subscription is not None:
            subscription.channel.abandon()
            subscription.left.set()
            if subscription.task is not None:
                subscription.task.cancel()

    async def subscribe_pull(self, key: str, name: str) -> None:
        """Subscribe puller ``key``; pullers sharing a key share its queue (a group)."""
        if key not in self.subscriptions:
            self.subscriptions[key] = _Subscription(name, BatchChannel(self.queue_batches))
        self.subscriptions[key].pullers += 1

    async def attend(self, key: str) -> None:
        """Stay open while ``key`` is subscribed: its puller's proof of life (see ``watch``)."""
        subscription = self.subscriptions.get(key)
        if subscription is not None:
            await subscription.left.wait()

    async def watch(self, key: str, attending: list[Any], puller: str = "") -> None:
        """Remove ``key`` once its pullers' processes died (a group goes on while one of its
        pullers lives): ``attending`` holds the reference to a puller's ``attend`` call,
        owned by that process."""
        subscription = self.subscriptions.get(key)
        if subscription is not None and not subscription.left.is_set():
            self.tasks.spawn(self._watch(key, subscription, attending[0], puller),
                             name=f"watch:{key}")

    async def _watch(self, key: str, subscription: _Subscription, attending: Any,
                     puller: str) -> None:
        try:
            await attending
        except RayError as exc:  # OwnerDiedError, mostly: nobody can reach that process
            waiting = self._waiting_pulls.pop(puller, None)
            if waiting is not None:  # it would take events for nobody: the group goes on
                waiting.cancel()
            subscription.pullers -= 1
            if self.subscriptions.get(key) is subscription and subscription.pullers <= 0:
                log.warning("topic %r: subscriber %s is gone (its process died: %s); removed",
                            self.topic, subscription.name, type(exc).__name__)
                self._drop(key)

    async def pull(self, key: str, max_batches: int, puller: str = "") -> list[Wire] | None:
        subscription = self.subscriptions.get(key)
        if subscription is None:
            return None
        waiting = asyncio.current_task()
        if puller and waiting is not None:
            self._waiting_pulls[puller] = waiting  # cancelled if the puller's process dies
        try:
            batches = await subscription.channel.get(max_batches)
        finally:
            self._waiting_pulls.pop(puller, None)
        if batches is None:
            self.subscriptions.pop(key, None)
            subscription.left.set()
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
        if self._dead_letter_topic is None:
            try:
                self._dead_letter_topic = await asyncio.to_thread(
                    ray.get_actor, topic_actor_name(DEAD_LETTERS), namespace=self.namespace)
            except ValueError:
                return  # nobody ever used the dead-letter topic: nobody is listening
        await self._dead_letter_topic.publish.remote(dead_letter_batch(letters))

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
