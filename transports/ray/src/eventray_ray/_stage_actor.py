"""Stage actors: each instance of a stream stage as a named async Ray actor.

Upstream instances ``push`` batches with a per-sender sequence number (async actors do not
promise to run calls in the order they were made, so the inbox restores it), each sender
keeping at most ``credits`` pushes in flight per receiver: that window, and the bounded inbox
behind it, is the backpressure between stages. Output for a stage that runs in the driver is
held in a bounded channel of the sending actor, and the driver takes it (``take_output``):
actors cannot call into the driver, and a relay actor in between would cost a hop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from eventray import DeadLetter, Event
from eventray.spi import (
    Batch,
    BatchChannel,
    Emitter,
    End,
    EventStream,
    Exchange,
    NullEmitter,
    PartitioningEmitter,
    StageContext,
    StagePlan,
    StageRunner,
)

from ._errors import ray_errors
from ._sequencer import Sequencer
from ._topic_actor import DEAD_LETTERS, dead_letter_batch, topic_actor_name
from ._topics import PullStream
from ._wire import ship


class OrderedInbox:
    """A bounded inbox taking pushes from several senders, each in its own sequence order."""

    def __init__(self, capacity: int) -> None:
        self.channel: BatchChannel[Any] = BatchChannel(capacity)
        self._order = Sequencer()

    async def push(self, sender: str, seq: int, items: list[Any]) -> None:
        await self._order.wait_turn(sender, seq)
        try:
            await self.channel.put(items)
        finally:
            self._order.done(sender, seq)

    async def get(self, max_items: int) -> list[Any] | None:
        return await self.channel.get(max_items)

    def task_done(self, count: int) -> None:
        self.channel.task_done(count)


class Receiver(ABC):
    """Where one stage instance sends to one instance of the next stage, in order."""

    @abstractmethod
    async def send(self, items: list[Any]) -> None:
        """Hand over ``items`` (batches and control messages), waiting for room."""

    async def settle(self) -> None:
        """Wait until everything sent was received."""


class ActorReceiver(Receiver):
    """Pushes to a stage actor, at most ``credits`` pushes in flight, numbered so the
    receiving (async) actor can put them back in order."""

    def __init__(self, handle: Any, sender: str, credits: int) -> None:
        self.handle = handle
        self.sender = sender
        self.credits = credits
        self._seq = 0
        self._in_flight: deque[Any] = deque()

    async def send(self, items: list[Any]) -> None:
        while len(self._in_flight) >= self.credits:
            await self._in_flight.popleft()
        self._in_flight.append(self.handle.push.remote(self.sender, self._seq, items))
        self._seq += 1

    async def settle(self) -> None:
        while self._in_flight:
            await self._in_flight.popleft()


class HeldReceiver(Receiver):
    """Keeps what is sent in a bounded channel of this process: for a stage in the driver,
    which takes it from there (``take_output`` of a stage actor, or directly when the sender
    runs in the driver too)."""

    def __init__(self, channel: BatchChannel[Any]) -> None:
        self.channel = channel

    async def send(self, items: list[Any]) -> None:
        await self.channel.put(items)


class RayEmitter(PartitioningEmitter):
    """Sends each piece of output to its receiver."""

    def __init__(self, sender: str, exchanges: Sequence[Exchange],
                 receivers: list[list[Receiver]]) -> None:
        super().__init__(sender, exchanges, [len(r) for r in receivers])
        self.receivers = receivers

    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        await self.receivers[output][receiver].send(items)

    async def end(self) -> None:
        await super().end()
        for receivers in self.receivers:
            for receiver in receivers:
                await receiver.settle()


class PulledInbox:
    """The inbox of a stage running in the driver: what its upstream stage actors hold for
    it, taken by one pulling task each, plus what driver-side senders put in directly."""

    def __init__(self, capacity: int) -> None:
        self.channel: BatchChannel[Any] = BatchChannel(capacity)

    async def pull(self, upstream: Any, output: int, receiver: int, max_items: int) -> None:
        """Take from one upstream actor until it has sent its ``End``."""
        while True:
            items: list[Any] = await upstream.take_output.remote(output, receiver, max_items)
            await self.channel.put(items)
            if any(isinstance(item, End) for item in items):
                return

    async def get(self, max_items: int) -> list[Any] | None:
        return await self.channel.get(max_items)

    def task_done(self, count: int) -> None:
        self.channel.task_done(count)


class ActorStageContext(StageContext):
    """Topics as seen from inside a stage actor: by name, in the job's namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._topics: dict[str, Any] = {}

    async def _topic(self, name: str) -> Any:
        if name not in self._topics:
            with ray_errors(f"finding topic {name!r}"):
                self._topics[name] = await asyncio.to_thread(
                    ray.get_actor, topic_actor_name(name), namespace=self.namespace)
        return self._topics[name]

    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        topic = await self._topic(DEAD_LETTERS)
        with ray_errors("publishing dead letters"):
            await topic.publish.remote(dead_letter_batch(letters))

    async def publish(self, topic: str, events: list[Event]) -> None:
        handle = await self._topic(topic)
        with ray_errors(f"publishing to topic {topic!r}"):
            await handle.publish.remote(await ship(Batch.from_events(events)))

    async def subscribe(self, topic: str, *, group: str | None = None) -> EventStream:
        # instances of a group pull from one subscription of the topic actor
        key = f"group-{group}" if group is not None else f"stage-{uuid.uuid4().hex}"
        return await PullStream(await self._topic(topic), key, f"stream:{topic}").open()


@dataclass(frozen=True)
class StageSpec:
    """What one stage actor runs."""

    job: str
    stage: StagePlan
    stage_name: str
    index: int
    # per next stage: its exchange, and its actors' names (None: it runs in the driver)
    outputs: list[tuple[Exchange, list[str] | None]]
    expected_ends: int
    batch_size: int
    linger: float
    on_error: str
    namespace: str
    credits: int
    inbox_batches: int = 8

    @property
    def actor_name(self) -> str:
        return f"{self.job}.{self.stage_name}.{self.index}"


def emitter_for(sender: str, exchanges: list[Exchange],
                receivers: list[list[Receiver]]) -> Emitter:
    return RayEmitter(sender, exchanges, receivers) if receivers else NullEmitter()


class StageActor:
    """One stage instance."""

    def __init__(self, spec: StageSpec) -> None:
        self.spec = spec
        self.inbox = OrderedInbox(spec.inbox_batches)
        self.held: dict[tuple[int, int], BatchChannel[Any]] = {}  # output for the driver
        self.runner: StageRunner | None = None

    def ready(self) -> int:
        return os.getpid()

    async def open(self) -> None:
        spec = self.spec
        receivers: list[list[Receiver]] = []
        for output, (_, names) in enumerate(spec.outputs):
            if names is None:  # the next stage runs in the driver and takes from here
                self.held[(output, 0)] = BatchChannel(spec.credits)
                receivers.append([HeldReceiver(self.held[(output, 0)])])
            else:
                with ray_errors(f"{spec.actor_name}: finding the next stage's actors"):
                    handles = [await asyncio.to_thread(ray.get_actor, name,
                                                       namespace=spec.namespace)
                               for name in names]
                receivers.append([ActorReceiver(handle, spec.actor_name, spec.credits)
                                  for handle in handles])
        self.runner = StageRunner(
            spec.stage, spec.index, job=spec.job, stage_name=spec.stage_name,
            expected_ends=spec.expected_ends, ctx=ActorStageContext(spec.namespace),
            emitter=emitter_for(spec.actor_name, [e for e, _ in spec.outputs], receivers),
            batch_size=spec.batch_size, linger=spec.linger, on_error=spec.on_error,
        )
        await self.runner.open()

    async def run(self) -> dict[str, float]:
        assert self.runner is not None
        await self.runner.run(None if self.spec.stage.reader is not None else self.inbox)
        return self.runner.metrics.as_dict()

    async def push(self, sender: str, seq: int, items: list[Any]) -> None:
        await self.inbox.push(sender, seq, items)

    async def take_output(self, output: int, receiver: int, max_items: int) -> list[Any]:
        """What this instance holds for the driver-side stage ``output``, waiting for some."""
        channel = self.held[(output, receiver)]
        items = await channel.get(max_items)
        assert items is not None  # the channel is never closed: an End ends the taking
        channel.task_done(len(items))
        return items

    async def request_stop(self) -> None:  # async: runs on the actor's event loop
        if self.runner is not None:
            self.runner.request_stop()

    def metrics(self) -> dict[str, float]:
        return self.runner.metrics.as_dict() if self.runner is not None else {}
