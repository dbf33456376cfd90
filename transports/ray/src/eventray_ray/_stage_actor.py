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
import pickle
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from ray.exceptions import RayActorError

from eventray import DeadLetter, Event
from eventray.spi import (
    AligningInbox,
    Batch,
    BatchChannel,
    Checkpoints,
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

from ._channels import ActorReceiver, ChannelsIn, Header, Receiver
from ._errors import ray_errors
from ._topic_actor import DEAD_LETTERS, dead_letter_batch, topic_actor_name
from ._topics import PullStream
from ._wire import ship


class OrderedInbox:
    """A bounded inbox taking pushes from several senders, each admitted in its sequence
    order without what the stage already has (``ChannelsIn``), and held back after a barrier
    until the checkpoint is taken (``AligningInbox``)."""

    def __init__(self, capacity: int) -> None:
        self.inbox = AligningInbox(capacity)
        self.channels = ChannelsIn()

    async def push(self, sender: str, header: Header, items: list[Any]) -> int:
        """Take a push; the place it got in this inbox's input, or -1 if it was dropped."""
        state = await self.channels.admit(sender, header)
        if state is None:
            return -1
        taken = False
        try:
            await self.inbox.wait_released(sender)  # after its barrier: until the checkpoint
            if self.channels.current(state, header):  # (the sender may have been restored)
                unseen, state.admitted = self.channels.unseen(state, header, items)
                if unseen:  # no checkpoint can count it before it is in: the sender's next
                    await self.inbox.put(sender, unseen)  # barrier comes after it
                    taken = True
        finally:
            place = self.channels.done(sender, header, taken)
        return place

    async def get(self, max_items: int) -> list[Any] | None:
        return await self.inbox.get(max_items)

    def task_done(self, count: int) -> None:
        self.inbox.task_done(count)

    def release(self, checkpoint_id: int) -> None:
        self.inbox.release(checkpoint_id)


class HeldReceiver(Receiver):
    """Keeps what is sent in a bounded channel of this stage actor, for a stage in the
    driver, which takes it from there (``take_output``)."""

    def __init__(self, channel: BatchChannel[Any]) -> None:
        self.channel = channel

    async def send(self, items: list[Any]) -> None:
        await self.channel.put(items)


class InboxReceiver(Receiver):
    """Puts into the inbox of a stage in this process (a driver stage sending to another)."""

    def __init__(self, inbox: AligningInbox, sender: str) -> None:
        self.inbox = inbox
        self.sender = sender

    async def send(self, items: list[Any]) -> None:
        await self.inbox.put(self.sender, items)


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
        for receiver in self._all():
            await receiver.settle()

    def _all(self) -> list[Receiver]:
        return [receiver for receivers in self.receivers for receiver in receivers]

    def snapshot(self) -> Any:
        return {"turn": self._turn,
                "channels": [[r.snapshot() for r in rs] for rs in self.receivers]}

    def restore(self, state: Any) -> None:
        self._turn = state["turn"]
        for receivers, saved in zip(self.receivers, state["channels"], strict=True):
            for receiver, channel in zip(receivers, saved, strict=True):
                receiver.restore(channel)

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        for receiver in self._all():
            receiver.checkpoint_complete(checkpoint_id)

    def overflow_when(self, check: Callable[[], bool]) -> None:
        """Let full replay buffers go past their bound while ``check()`` is true."""
        for receiver in self._all():
            if isinstance(receiver, ActorReceiver):
                receiver.overflow_ok = check

    def prepare_replay(self, name: str) -> tuple[int, list[int]]:
        """The actor ``name`` is being restored: its channel's new replay generation, and the
        places in its input of what this instance will send it again."""
        for receiver in self._all():
            if receiver.name == name:
                return receiver.prepare_replay()
        return 0, []

    async def replay_to(self, name: str) -> None:
        """Send the restored actor ``name`` again what it may not have."""
        for receiver in self._all():
            if receiver.name == name:
                await receiver.replay()

    @property
    def buffered(self) -> int:
        """Batches kept for replay, over every channel."""
        return sum(receiver.buffered for receiver in self._all())


class Failover(Protocol):
    """How a driver-side stage learns that a stage actor it takes from was restored."""

    def epoch(self, name: str) -> int: ...

    async def restored_since(self, name: str, epoch: int) -> bool: ...


class PulledInbox:
    """The inbox of a stage running in the driver: what its upstream stage actors hold for
    it, taken by one pulling task each, plus what driver-side senders put in directly."""

    def __init__(self, capacity: int) -> None:
        self.inbox = AligningInbox(capacity)

    async def pull(self, upstream: Any, sender: str, output: int, receiver: int,
                   max_items: int, failover: Failover | None = None) -> None:
        """Take from one upstream actor until it has sent its ``End``; while it is being
        restored (``failover``), wait for it."""
        while True:
            epoch = failover.epoch(sender) if failover is not None else 0
            try:
                items: list[Any] = await upstream.take_output.remote(output, receiver,
                                                                     max_items)
            except RayActorError:
                if failover is None or not await failover.restored_since(sender, epoch):
                    raise
                continue
            batches: list[Any] = []
            for item in items:  # control messages go in one by one (barriers hold the sender)
                if type(item) is Batch:
                    batches.append(item)
                    continue
                if batches:
                    await self.inbox.put(sender, batches)
                    batches = []
                await self.inbox.put(sender, [item])
                if type(item) is End:
                    return
            if batches:
                await self.inbox.put(sender, batches)

    async def get(self, max_items: int) -> list[Any] | None:
        return await self.inbox.get(max_items)

    def task_done(self, count: int) -> None:
        self.inbox.task_done(count)

    def release(self, checkpoint_id: int) -> None:
        self.inbox.release(checkpoint_id)


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


class ActorCheckpoints(Checkpoints):
    """The parts of checkpoints this actor's stage took, and its end, until the driver's
    coordinator takes them (``take_reports``): actors cannot call into the driver. A part
    holds the stage's state and what its inbox has taken from each sender."""

    def __init__(self, channels: ChannelsIn) -> None:
        self.channels = channels
        self._reports: list[tuple[str, int, bytes]] = []
        self._ready = asyncio.Event()

    def _part(self, state: bytes) -> bytes:
        return pickle.dumps({"stage": state, "channels": self.channels.snapshot()})

    async def acknowledge(self, instance: str, checkpoint_id: int, state: bytes) -> None:
        self._reports.append(("ack", checkpoint_id, self._part(state)))
        self._ready.set()

    async def finished(self, instance: str, state: bytes) -> None:
        self._reports.append(("end", 0, self._part(state)))
        self._ready.set()

    def hurry(self) -> None:
        """A replay buffer is filling up: ask for a checkpoint now."""
        if not any(kind == "hurry" for kind, _, _ in self._reports):
            self._reports.append(("hurry", 0, b""))
            self._ready.set()

    async def take(self) -> list[tuple[str, int, bytes]]:
        """What was reported since the last call, waiting for something."""
        while not self._reports:
            await self._ready.wait()
            self._ready.clear()
        reports, self._reports = self._reports, []
        return reports


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
    checkpointing: bool = False
    replay_batches: int = 128  # per channel, kept for replay while checkpointing

    @property
    def actor_name(self) -> str:
        return f"{self.job}.{self.stage_name}.{self.index}"


def emitter_for(sender: str, exchanges: list[Exchange],
                receivers: list[list[Receiver]]) -> Emitter:
    return RayEmitter(sender, exchanges, receivers) if receivers else NullEmitter()


class StageActor:
    """One stage instance."""

    def __init__(self, inbox_batches: int, checkpointing: bool) -> None:
        # small arguments only: Ray keeps them to restart the actor; open() takes the spec
        self.spec: StageSpec | None = None
        self.opened = asyncio.Event()  # pushes wait for it: a restored inbox knows its senders
        self.inbox = OrderedInbox(inbox_batches)
        self.held: dict[tuple[int, int], BatchChannel[Any]] = {}  # output for the driver
        self.runner: StageRunner | None = None
        self.emitter: RayEmitter | None = None
        self.reports = ActorCheckpoints(self.inbox.channels) if checkpointing else None

    def ready(self) -> int:
        return os.getpid()

    async def open(self, spec: StageSpec, state: bytes | None = None, checkpoint_id: int = 0,
                   epoch: int = 0, generations: dict[str, int] | None = None,
                   places: dict[str, list[int]] | None = None) -> None:
        """Connect to the next stage's actors and open the stage ``spec``, resuming from
        ``state`` (this instance's part of checkpoint ``checkpoint_id``) if given; ``epoch``
        counts the times this instance was restored; ``generations`` and ``places`` are what
        its senders' ``prepare_replay`` said (a restore)."""
        self.spec = spec
        replay = spec.replay_batches if self.reports is not None else None
        hurry = self.reports.hurry if self.reports is not None else None
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
                receivers.append([
                    ActorReceiver(handle, name, spec.actor_name, spec.credits, epoch=epoch,
                                  replay_batches=replay, hurry=hurry)
                    for name, handle in zip(names, handles, strict=True)])
        emitter = emitter_for(spec.actor_name, [e for e, _ in spec.outputs], receivers)
        self.emitter = emitter if isinstance(emitter, RayEmitter) else None
        self.runner = StageRunner(
            spec.stage, spec.index, job=spec.job, stage_name=spec.stage_name,
            expected_ends=spec.expected_ends, ctx=ActorStageContext(spec.namespace),
            emitter=emitter, batch_size=spec.batch_size, linger=spec.linger,
            on_error=spec.on_error, checkpoints=self.reports,
        )
        self.runner.metrics.restarts = epoch
        if self.emitter is not None:
            runner = self.runner
            self.emitter.overflow_when(lambda: runner.checkpoint_pending)
        if state is not None:
            saved = pickle.loads(state)
            self.runner.restore_bytes(saved["stage"], checkpoint_id)
            self.inbox.channels.restore(saved["channels"])
            if generations is None:  # a resumed job, not a restored instance
                self.inbox.channels.resumed()
        if generations is not None:
            self.inbox.channels.expect(generations, places or {})
        await self.runner.open()
        self.opened.set()

    async def run(self) -> dict[str, float]:
        assert self.runner is not None
        assert self.spec is not None
        await self.runner.run(None if self.spec.stage.reader is not None else self.inbox)
        return self.metrics()

    async def push(self, sender: str, header: Header, items: list[Any]) -> int:
        await self.opened.wait()
        return await self.inbox.push(sender, header, items)

    def prepare_replay(self, name: str) -> tuple[int, list[int]]:
        """The stage actor ``name`` is being restored: see ``RayEmitter.prepare_replay``."""
        return self.emitter.prepare_replay(name) if self.emitter is not None else (0, [])

    async def replay_to(self, name: str) -> None:
        """The stage actor ``name`` was restored: send it again what it may not have."""
        if self.emitter is not None:
            await self.emitter.replay_to(name)

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

    async def trigger_checkpoint(self, checkpoint_id: int, final: bool) -> None:
        """Take checkpoint ``checkpoint_id`` (a source); ``final``: drain, then take it."""
        if self.runner is not None:
            self.runner.request_checkpoint(checkpoint_id, final=final)

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.runner is not None:
            await self.runner.checkpoint_complete(checkpoint_id)

    async def take_reports(self) -> list[tuple[str, int, bytes]]:
        """The checkpoint parts and the end this stage reported, waiting for some."""
        assert self.reports is not None
        return await self.reports.take()

    def metrics(self) -> dict[str, float]:
        if self.runner is None:
            return {}
        buffered = self.emitter.buffered if self.emitter is not None else 0
        return {**self.runner.metrics.as_dict(), "replay_buffered": buffered}
