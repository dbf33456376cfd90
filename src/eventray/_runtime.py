"""The stage loop, the same on every transport.

A stage instance is an async polling loop: take a batch (from its reader, or from its inbox,
where upstream instances put batches and in-band control messages), run it through its
operator chain, hand the result to its emitter (which partitions it to the next stage's
instances and waits for room: backpressure). When every upstream instance has sent ``End`` it
finishes its operators (open windows flush) and sends ``End`` on. Control messages travel in
order with the data, which is where checkpoint barriers will go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._batch import Batch, concat, split_by_key
from ._errors import StageFailed
from ._event import DeadLetter, Event, describe, now_ms
from ._ops import StreamOp
from ._plan import StagePlan
from ._readers import Reader

log = logging.getLogger("eventray")


class End:
    """In-band message: the sending instance has nothing more."""

    __slots__ = ("sender",)

    def __init__(self, sender: str) -> None:
        self.sender = sender

    def __repr__(self) -> str:
        return f"End({self.sender!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (End, (self.sender,))


class EventStream(Protocol):
    """What ``StageContext.subscribe`` returns: batches of a topic's events."""

    async def get(self, max_items: int) -> list[Event] | None: ...

    async def get_batch(self, max_items: int) -> Batch | None:
        """Like ``get``, as one column batch."""

    def task_done(self, count: int) -> None: ...

    async def finish(self) -> None:
        """Unsubscribe, keeping what was already delivered: ``get`` returns it, then None."""

    async def aclose(self) -> None: ...


class StageContext(ABC):
    """What a stage instance needs from the transport running it."""

    @abstractmethod
    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        """Publish to the bus's dead-letter topic."""

    @abstractmethod
    async def publish(self, topic: str, events: list[Event]) -> None:
        """Publish to a bus topic (``sink(topic)``)."""

    @abstractmethod
    async def subscribe(self, topic: str) -> EventStream:
        """Subscribe to a bus topic (``from_topic``)."""


class Inbox(Protocol):
    async def get(self, max_items: int) -> list[Any] | None: ...

    def task_done(self, count: int) -> None: ...


class Emitter(ABC):
    """Sends a stage instance's output to the next stage's instances."""

    @abstractmethod
    async def emit(self, batch: Batch) -> None:
        """Send ``batch`` on, waiting while the receivers are full."""

    @abstractmethod
    async def end(self) -> None:
        """Tell every receiver this instance is done."""


class PartitioningEmitter(Emitter):
    """Cuts output for each next stage by its exchange (by key, or whole batches in turn)
    and sends the pieces with ``send``; ``end`` sends ``End`` to every receiver."""

    def __init__(self, sender: str, exchanges: Sequence[str], fan_out: list[int]) -> None:
        self.sender = sender
        self.exchanges = exchanges  # per next stage: "hash" or "rebalance"
        self.fan_out = fan_out  # per next stage: its number of instances
        self._turn = 0

    @abstractmethod
    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        """Deliver ``items`` (batches or control messages) to one receiver, in order."""

    async def emit(self, batch: Batch) -> None:
        for output, (exchange, receivers) in enumerate(
            zip(self.exchanges, self.fan_out, strict=True)
        ):
            if receivers == 1:
                await self.send(output, 0, [batch])
            elif exchange == "hash":
                for receiver, part in enumerate(split_by_key(batch, receivers)):
                    if len(part):
                        await self.send(output, receiver, [part])
            else:
                self._turn += 1
                await self.send(output, self._turn % receivers, [batch])

    async def end(self) -> None:
        for output, receivers in enumerate(self.fan_out):
            for receiver in range(receivers):
                await self.send(output, receiver, [End(self.sender)])


class NullEmitter(Emitter):
    """The last stage: output goes nowhere (sinks have already seen it)."""

    async def emit(self, batch: Batch) -> None:
        return None

    async def end(self) -> None:
        return None


@dataclass
class StageMetrics:
    """Counters of one stage instance."""

    records_in: int = 0
    records_out: int = 0
    batches: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def as_dict(self) -> dict[str, float]:
        end = self.finished or time.monotonic()
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "batches": self.batches,
            "failed": self.failed,
            "seconds": round(end - self.started, 6),
        }


class OpContext:
    """Handles the records an operator failed on, by the operator's or the stream's policy."""

    def __init__(self, job: str, stage: str, policy: str, ctx: StageContext,
                 metrics: StageMetrics) -> None:
        self.job = job
        self.stage = stage
        self.policy = policy
        self.ctx = ctx
        self.metrics = metrics

    async def fail(self, op: StreamOp, batch: Batch, failures: list[tuple[int, Exception]]) -> None:
        self.metrics.failed += len(failures)
        policy = op.on_error or self.policy
        where = f"{self.job}.{op.name}"
        if policy == "skip":
            return
        if policy == "fail":
            _, error = failures[0]
            raise StageFailed(self.stage, describe(error), job=self.job) from error
        letters = [
            DeadLetter(batch.values[i], describe(error), where, batch.key_at(i), batch.ts_at(i))
            for i, error in failures
        ]
        await self.ctx.dead_letters(letters)

    async def publish(self, topic: str, events: list[Event]) -> None:
        await self.ctx.publish(topic, events)


class StageRunner:
    """One instance of a stage: its reader or inbox, operator chain and emitter."""

    def __init__(self, plan: StagePlan, index: int, *, job: str, stage_name: str,
                 expected_ends: int, ctx: StageContext, emitter: Emitter, batch_size: int,
                 linger: float, on_error: str) -> None:
        self.name = f"{job}.{stage_name}.{index}"
        self.ops = [op.fresh() for op in plan.ops]
        self.reader: Reader | None = (
            plan.reader.fresh(index, plan.parallelism) if plan.reader is not None else None
        )
        self.expected_ends = expected_ends
        self.ctx = ctx
        self.emitter = emitter
        self.batch_size = batch_size
        self.linger = linger
        self.metrics = StageMetrics()
        self.op_ctx = OpContext(job, stage_name, on_error, ctx, self.metrics)
        self._stop_requested = False
        self._reading: asyncio.Task[Any] | None = None

    async def open(self) -> None:
        """Open the reader (a topic reader subscribes here), before ``run``."""
        if self.reader is not None:
            await self.reader.open(self.ctx)

    async def run(self, inbox: Inbox | None = None) -> None:
        """Run until the input ends (or a drain stops the reader), then finish."""
        try:
            if self.reader is not None:
                await self._from_reader(self.reader)
            else:
                assert inbox is not None
                await self._from_inbox(inbox)
            await self._finish()
        finally:
            self.metrics.finished = time.monotonic()
            await self._close()

    def request_stop(self) -> None:
        """Drain: stop taking new records from the reader; what is in flight goes on."""
        self._stop_requested = True
        if self._reading is not None:
            self._reading.cancel()

    async def _from_reader(self, reader: Reader) -> None:
        task = asyncio.current_task()
        while not self._stop_requested:
            self._reading = task
            try:
                batch = await self._read_lingering(reader)
            except asyncio.CancelledError:
                if self._stopped_by_us(task):
                    break  # a drain: what the reader already holds is handed over below
                raise
            finally:
                self._reading = None
            if batch is None:
                return
            if len(batch):
                await self.process(batch)
        while (held := await reader.drain(self.batch_size)) is not None:
            if len(held):
                await self.process(held)

    def _stopped_by_us(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether a cancellation came only from ``request_stop`` (then it is consumed)."""
        return self._stop_requested and task is not None and task.uncancel() == 0

    async def _read_lingering(self, reader: Reader) -> Batch | None:
        deadline = self._next_deadline()
        if deadline is None:
            batch = await reader.read(self.batch_size)
        else:  # a processing-time operator is due: wake up for it even if input is idle
            try:
                async with asyncio.timeout(max(0.0, (deadline - now_ms()) / 1000)):
                    batch = await reader.read(self.batch_size)
            except TimeoutError:
                await self._advance(now_ms())
                return Batch([])
        if batch is None or self.linger <= 0 or len(batch) >= self.batch_size:
            return batch
        parts = [batch]
        size = len(batch)
        linger_until = asyncio.get_running_loop().time() + self.linger
        while size < self.batch_size:
            remaining = linger_until - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    more = await reader.read(self.batch_size - size)
            except TimeoutError:
                break
            except asyncio.CancelledError:  # a drain: keep what was already read
                if self._stopped_by_us(asyncio.current_task()):
                    break
                raise
            if more is None:
                break
            parts.append(more)
            size += len(more)
        return concat(parts)

    async def _from_inbox(self, inbox: Inbox) -> None:
        ends = 0
        while ends < self.expected_ends:
            items = await self._get(inbox)
            if items is None:
                return
            pending: list[Batch] = []
            for item in items:
                if type(item) is Batch:
                    pending.append(item)
                    continue
                if pending:
                    await self.process(concat(pending))
                    pending = []
                if type(item) is End:
                    ends += 1
            if pending:
                await self.process(concat(pending))
            inbox.task_done(len(items))

    async def _get(self, inbox: Inbox) -> list[Any] | None:
        deadline = self._next_deadline()
        if deadline is None:
            return await inbox.get(self.batch_size)
        while True:
            wait = max(0.0, (deadline - now_ms()) / 1000)
            try:
                async with asyncio.timeout(wait):
                    return await inbox.get(self.batch_size)
            except TimeoutError:
                await self._advance(now_ms())
                deadline = self._next_deadline()
                if deadline is None:
                    return await inbox.get(self.batch_size)

    def _next_deadline(self) -> int | None:
        deadlines = [d for op in self.ops if (d := op.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    async def _advance(self, now: int) -> None:
        for position, op in enumerate(self.ops):
            due = op.advance(now, self.op_ctx)
            if due is not None and len(due):
                await self.process(due, position + 1, count_in=False)

    async def process(self, batch: Batch, start: int = 0, *, count_in: bool = True) -> None:
        """Run ``batch`` through the operators from ``start`` on, then emit it."""
        if count_in:
            self.metrics.records_in += len(batch)
            self.metrics.batches += 1
        ctx = self.op_ctx
        for op in self.ops[start:] if start else self.ops:
            batch = await op.run(batch, ctx)
            if not batch.values:
                return
        self.metrics.records_out += len(batch)
        await self.emitter.emit(batch)

    async def _finish(self) -> None:
        for position, op in enumerate(self.ops):
            held = await op.finish(self.op_ctx)
            if held is not None and len(held):
                await self.process(held, position + 1, count_in=False)
        await self.emitter.end()

    async def _close(self) -> None:
        for op in self.ops:
            try:
                await op.close()
            except Exception as exc:  # closing must reach every operator
                log.warning("%s: closing %s failed: %s", self.name, op.name, describe(exc))
        if self.reader is not None:
            await self.reader.close()

    def snapshot(self) -> dict[str, Any]:
        """The state of every operator and the reader's position (checkpoint hook)."""
        return {
            "reader": self.reader.snapshot() if self.reader is not None else None,
            "ops": [op.snapshot() for op in self.ops],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from a ``snapshot``."""
        if self.reader is not None:
            self.reader.restore(state["reader"])
        for op, op_state in zip(self.ops, state["ops"], strict=True):
            op.restore(op_state)
