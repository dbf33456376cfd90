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
from typing import Any

from eventray._model.batch import Batch, concat
from eventray._model.event import describe, now_ms

from .context import End, Inbox, StageContext, StageMetrics
from .emitters import Emitter
from .operator import OpContext
from .plan import StagePlan
from .readers import Reader
from .tasks import cancel_and_wait

log = logging.getLogger("eventray")

SLOW_DRAIN_WARNING = 5.0  # seconds a drain waits for a read before saying why it waits


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
        self._ended = False  # the reader returned None
        self._read: asyncio.Task[Batch | None] | None = None  # a read in flight
        self._stopped: asyncio.Future[None] | None = None  # done once a drain is requested

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
        """Drain: stop taking new records from the reader. Nothing is cancelled: a read in
        progress completes and is delivered, then what the reader still holds."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)  # wakes the read loop, which never cancels a read
        if self.reader is not None:
            self.reader.stop_reading()

    async def _from_reader(self, reader: Reader) -> None:
        while not self._stop_requested and not self._ended:
            batch = await self._read_lingering(reader)
            if batch is not None and len(batch):
                await self.process(batch)
        if self._read is not None:  # a drain: the read in flight completes and is delivered
            done, _ = await asyncio.wait({self._read}, timeout=SLOW_DRAIN_WARNING)
            if not done:
                log.warning("%s: the drain waits for a read in progress; a source that can "
                            "block in read() should define stop_reading()", self.name)
                await asyncio.wait({self._read})
            batch = self._take_read()
            if batch is not None and len(batch):
                await self.process(batch)
        if self._stop_requested:
            while (held := await reader.drain(self.batch_size)) is not None:
                if len(held):
                    await self.process(held)

    def _take_read(self) -> Batch | None:
        """The result of the finished read (its error, if it failed)."""
        assert self._read is not None
        read, self._read = self._read, None
        batch = read.result()
        if batch is None:
            self._ended = True
        return batch

    async def _read_lingering(self, reader: Reader) -> Batch | None:
        """Up to ``batch_size`` records, gathering reads for up to ``linger`` seconds after the
        first; processing-time operators are advanced when they are due. A read is never
        cancelled: a timer that fires leaves it running, and the next call takes it up."""
        loop = asyncio.get_running_loop()
        parts: list[Batch] = []
        size = 0
        linger_until: float | None = None
        while True:
            if self._read is None:
                self._read = loop.create_task(reader.read(self.batch_size - size),
                                              name=f"{self.name}:read")
            if self._stopped is None:
                self._stopped = loop.create_future()
            timeout = self._wake_after(linger_until)
            waiting: set[asyncio.Future[Any]] = {self._read, self._stopped}
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if self._read in done:
                batch = self._take_read()
                if batch is not None and len(batch):
                    parts.append(batch)
                    size += len(batch)
                if (batch is None or size >= self.batch_size or self.linger <= 0
                        or self._stop_requested):
                    return concat(parts) if parts else None
                if parts and linger_until is None:
                    linger_until = loop.time() + self.linger
                continue
            if parts or self._stop_requested:  # lingered long enough, or a drain began
                return concat(parts) if parts else None
            await self._advance(now_ms())  # a processing-time operator is due

    def _wake_after(self, linger_until: float | None) -> float | None:
        """Seconds until the loop must act without new input: the end of the linger, or the
        next processing-time deadline."""
        waits = []
        if linger_until is not None:
            waits.append(linger_until - asyncio.get_running_loop().time())
        deadline = self._next_deadline()
        if deadline is not None:
            waits.append((deadline - now_ms()) / 1000)
        return max(0.0, min(waits)) if waits else None

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
        if self._read is not None:  # only a hard stop or a failure leaves a read behind
            await cancel_and_wait(self._read, f"{self.name}: a read")
            self._read = None
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
