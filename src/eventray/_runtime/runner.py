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

log = logging.getLogger("eventray")


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
