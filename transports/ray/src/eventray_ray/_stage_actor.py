"""Stage actors: each instance of a stream stage as a named async Ray actor.

Upstream instances ``push`` batches with a per-sender sequence number (async actors do not
promise to run calls in the order they were made, so the inbox restores it), each sender
keeping at most ``credits`` pushes in flight per receiver: that window, and the bounded inbox
behind it, is the backpressure between stages. A relay actor is only an inbox, read with
``take`` by a stage that runs in the driver.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from eventray import DeadLetter, Event
from eventray._batch import Batch
from eventray._channel import BatchChannel
from eventray._plan import Exchange, StagePlan
from eventray._runtime import (
    Emitter,
    EventStream,
    NullEmitter,
    PartitioningEmitter,
    StageContext,
    StageRunner,
)

from ._sequencer import Sequencer
from ._topic_actor import DEAD_LETTERS, dead_letter_batch, topic_actor_name
from ._topics import PullStream


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


class RayEmitter(PartitioningEmitter):
    """Pushes to the next stages' actors, at most ``credits`` pushes in flight to each."""

    def __init__(self, sender: str, exchanges: Sequence[Exchange], receivers: list[list[Any]],
                 credits: int) -> None:
        super().__init__(sender, exchanges, [len(r) for r in receivers])
        self.receivers = receivers
        self.credits = credits
        self._seq: dict[tuple[int, int], int] = {}
        self._in_flight: dict[tuple[int, int], deque[Any]] = {}

    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        key = (output, receiver)
        pending = self._in_flight.setdefault(key, deque())
        while len(pending) >= self.credits:
            await pending.popleft()
        seq = self._seq.get(key, 0)
        self._seq[key] = seq + 1
        pending.append(self.receivers[output][receiver].push.remote(self.sender, seq, items))

    async def end(self) -> None:
        await super().end()
        for pending in self._in_flight.values():
            while pending:
                await pending.popleft()


class RelayInbox:
    """The inbox of a stage running in the driver: batches taken from its relay actor."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay
        self._taking: Any = None  # a take call whose result nobody has used yet

    async def get(self, max_items: int) -> list[Any] | None:
        """Safe to cancel: an answered take is kept for the next call."""
        if self._taking is None:
            self._taking = self.relay.take.remote(max_items)
        items: list[Any] | None = await self._taking
        self._taking = None
        return items

    def task_done(self, count: int) -> None:
        """Taken is done, as far as the relay counts."""


class ActorStageContext(StageContext):
    """Topics as seen from inside a stage actor: by name, in the job's namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._topics: dict[str, Any] = {}

    def _topic(self, name: str) -> Any:
        if name not in self._topics:
            self._topics[name] = ray.get_actor(topic_actor_name(name), namespace=self.namespace)
        return self._topics[name]

    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        await self._topic(DEAD_LETTERS).publish.remote(dead_letter_batch(letters))

    async def publish(self, topic: str, events: list[Event]) -> None:
        await self._topic(topic).publish.remote(Batch.from_events(events))

    async def subscribe(self, topic: str) -> EventStream:
        key = f"stage-{uuid.uuid4().hex}"
        return await PullStream(self._topic(topic), key, f"stream:{topic}").open()


@dataclass(frozen=True)
class StageSpec:
    """What one stage actor runs."""

    job: str
    stage: StagePlan
    stage_name: str
    index: int
    outputs: list[tuple[Exchange, list[str]]]  # per next stage: exchange, its actors' names
    expected_ends: int
    batch_size: int
    linger: float
    on_error: str
    namespace: str
    credits: int
    inbox_batches: int = 8
    relay: bool = False

    @property
    def actor_name(self) -> str:
        return f"{self.job}.{self.stage_name}.{self.index}"


def emitter_for(sender: str, outputs: list[tuple[Exchange, list[Any]]],
                credits: int) -> Emitter:
    if not outputs:
        return NullEmitter()
    return RayEmitter(sender, [exchange for exchange, _ in outputs],
                      [handles for _, handles in outputs], credits)


class StageActor:
    """One stage instance (or, as a relay, the inbox of one that runs in the driver)."""

    def __init__(self, spec: StageSpec) -> None:
        self.spec = spec
        self.inbox = OrderedInbox(spec.inbox_batches)
        self.runner: StageRunner | None = None

    def ready(self) -> int:
        return os.getpid()

    async def open(self) -> None:
        spec = self.spec
        outputs = [
            (exchange, [ray.get_actor(name, namespace=spec.namespace) for name in names])
            for exchange, names in spec.outputs
        ]
        self.runner = StageRunner(
            spec.stage, spec.index, job=spec.job, stage_name=spec.stage_name,
            expected_ends=spec.expected_ends, ctx=ActorStageContext(spec.namespace),
            emitter=emitter_for(spec.actor_name, outputs, spec.credits),
            batch_size=spec.batch_size, linger=spec.linger, on_error=spec.on_error,
        )
        await self.runner.open()

    async def run(self) -> dict[str, float]:
        assert self.runner is not None
        await self.runner.run(None if self.spec.stage.reader is not None else self.inbox)
        return self.runner.metrics.as_dict()

    async def push(self, sender: str, seq: int, items: list[Any]) -> None:
        await self.inbox.push(sender, seq, items)

    async def take(self, max_items: int) -> list[Any] | None:
        items = await self.inbox.get(max_items)
        if items is not None:
            self.inbox.task_done(len(items))
        return items

    def request_stop(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()

    def metrics(self) -> dict[str, float]:
        return self.runner.metrics.as_dict() if self.runner is not None else {}
