"""The stage loop, the same on every transport.

A stage instance is an async polling loop: take a batch (from its reader, or from its inbox,
where upstream instances put batches and in-band control messages), run it through its
operator chain, hand the result to its emitter (which partitions it to the next stage's
instances and waits for room: backpressure). When every upstream instance has sent ``End`` it
finishes its operators (open windows flush) and sends ``End`` on.

Checkpoints: a source instance asked for checkpoint ``n`` takes it between two reads (never
with a read in flight, so its position covers exactly what it handed on; a reader without a
position, a topic, need not wait for its read): sinks flush, it
snapshots its reader, operators and emitter, sends ``Barrier(n)`` on in order with the data
and acknowledges to the job's ``Checkpoints``. An instance with an inbox does the same once
a barrier ``n`` came from every upstream instance that has not ended (the inbox holds back
senders whose barrier is in: alignment). Once the checkpoint is durable,
``checkpoint_complete`` commits the source position it held.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from typing import Any

from eventray._model.batch import Batch, concat
from eventray._model.errors import StageFailed
from eventray._model.event import describe, now_ms

from .context import Barrier, Checkpoints, End, Inbox, StageContext, StageMetrics
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
                 linger: float, on_error: str, checkpoints: Checkpoints | None = None) -> None:
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
        self.checkpoints = checkpoints
        self._checkpoint_due: int | None = None  # a source asked to take this checkpoint
        self._wanted = 0  # the latest checkpoint asked for
        self._final_checkpoint: int | None = None  # to take once a drain has read everything
        self._final_taken = False  # open windows stay in the final checkpoint, unflushed
        self._nudge: asyncio.Future[None] | None = None  # wakes the read loop for a checkpoint
        self._aligning: Barrier | None = None  # the barrier an inbox stage is aligning
        self._arrived: set[str] = set()  # senders whose barrier for it came
        self._senders_ended: set[str] = set()  # senders whose End came
        self._positions: dict[int, Any] = {}  # checkpoint id -> reader position, until commit

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
                inbox.release(self.metrics.checkpoint_id)  # restored: its barriers are old
                await self._from_inbox(inbox)
            await self._finish()
            if self.checkpoints is not None:
                await self.checkpoints.finished(self.name, self._pickle(self.snapshot()))
        finally:
            self.metrics.finished = time.monotonic()
            await self._close()

    def request_stop(self, final_checkpoint: int | None = None) -> None:
        """Drain: stop taking new records from the reader. Nothing is cancelled: a read in
        progress completes and is delivered, then what the reader still holds. A source
        given ``final_checkpoint`` then takes that checkpoint before it ends."""
        if self._stop_requested:
            return
        self._stop_requested = True
        self._final_checkpoint = final_checkpoint
        if final_checkpoint is not None:
            self._wanted = max(self._wanted, final_checkpoint)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)  # wakes the read loop, which never cancels a read
        if self.reader is not None:
            self.reader.stop_reading()

    @property
    def checkpoint_pending(self) -> bool:
        """A checkpoint was asked for that this instance has not taken yet."""
        return self._wanted > self.metrics.checkpoint_id and not self._final_taken

    def request_checkpoint(self, checkpoint_id: int, *, final: bool = False) -> None:
        """Take checkpoint ``checkpoint_id`` between two reads (source instances); ignored
        once the source ended or drains (its end or final checkpoint stands for it). Other
        instances take it when its barriers come; they only note that it is pending.
        ``final``: the drain's checkpoint (``request_stop``, then take it)."""
        if final:
            self.request_stop(checkpoint_id if self.reader is not None else None)
            return
        self._wanted = max(self._wanted, checkpoint_id)
        if self.reader is None or self._stop_requested or self._ended:
            return
        self._checkpoint_due = checkpoint_id
        if self._nudge is not None and not self._nudge.done():
            self._nudge.set_result(None)

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable: commit the source position it holds."""
        self.emitter.checkpoint_complete(checkpoint_id)
        position = self._positions.pop(checkpoint_id, None)
        for older in [i for i in self._positions if i < checkpoint_id]:
            del self._positions[older]
        if position is None or self.reader is None:
            return
        try:
            await self.reader.commit(position)
        except Exception as exc:  # the position is committed with a later checkpoint
            log.warning("%s: committing checkpoint %d failed: %s", self.name, checkpoint_id,
                        describe(exc))

    async def _take_checkpoint(self, checkpoint_id: int, *, final: bool = False) -> None:
        """Flush sinks, snapshot, send the barrier on and acknowledge."""
        assert self.checkpoints is not None
        for op in self.ops:
            await op.prepare_checkpoint(self.op_ctx)
        state = self.snapshot(emitter=False)
        if self.reader is not None:
            self._positions[checkpoint_id] = state["reader"]
        await self.emitter.barrier(Barrier(checkpoint_id, self.name, final))
        state["emitter"] = self.emitter.snapshot()  # as it resumes: after the barrier
        await self.checkpoints.acknowledge(self.name, checkpoint_id, self._pickle(state))
        self.metrics.checkpoint_id = checkpoint_id
        if final:
            self._final_taken = True

    def _pickle(self, state: dict[str, Any]) -> bytes:
        try:
            return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            for op in self.ops:  # name the operator whose state cannot be saved
                try:
                    pickle.dumps(op.snapshot())
                except Exception:
                    raise StageFailed(self.name, f"the state of {op.name} cannot be "
                                      f"checkpointed (pickled): {describe(exc)}",
                                      job=self.op_ctx.job) from exc
            raise StageFailed(self.name, f"its state cannot be checkpointed (pickled): "
                              f"{describe(exc)}", job=self.op_ctx.job) from exc

    async def _from_reader(self, reader: Reader) -> None:
        while not self._stop_requested and not self._ended:
            if self._checkpoint_due is not None and (self._read is None
                                                     or reader.position_free):
                due, self._checkpoint_due = self._checkpoint_due, None
                await self._take_checkpoint(due)
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
            if self._final_checkpoint is not None and self.checkpoints is not None:
                await self._take_checkpoint(self._final_checkpoint, final=True)

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
                if self._checkpoint_due is not None:  # taken before the next read starts
                    return concat(parts) if parts else None
                self._read = loop.create_task(reader.read(self.batch_size - size),
                                              name=f"{self.name}:read")
            if self._stopped is None:
                self._stopped = loop.create_future()
            if self._nudge is None or self._nudge.done():
                self._nudge = loop.create_future()
            timeout = self._wake_after(linger_until)
            waiting: set[asyncio.Future[Any]] = {self._read, self._stopped, self._nudge}
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            hurry = self._stop_requested or self._checkpoint_due is not None
            if self._read in done:
                batch = self._take_read()
                if batch is not None and len(batch):
                    parts.append(batch)
                    size += len(batch)
                if batch is None or size >= self.batch_size or self.linger <= 0 or hurry:
                    return concat(parts) if parts else None
                if parts and linger_until is None:
                    linger_until = loop.time() + self.linger
                continue
            if parts or self._stop_requested:  # lingered long enough, or a drain began
                return concat(parts) if parts else None
            if self._checkpoint_due is not None and reader.position_free:
                return None  # the checkpoint need not wait for the read
            if not done:
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
        while len(self._senders_ended) < self.expected_ends:
            items = await self._get(inbox)
            if items is None:
                return
            pending: list[Batch] = []
            for item in items:
                if type(item) is Batch:
                    if self.checkpoints is not None:  # as sent: a replay gives the same output
                        await self.process(item)
                    else:
                        pending.append(item)
                    continue
                if pending:
                    await self.process(concat(pending))
                    pending = []
                if type(item) is End:
                    if item.sender not in self._senders_ended:  # not again, after a restore
                        self._senders_ended.add(item.sender)
                        await self._check_aligned(inbox)
                elif type(item) is Barrier:
                    await self._on_barrier(item, inbox)
            if pending:
                await self.process(concat(pending))
            inbox.task_done(len(items))

    async def _on_barrier(self, barrier: Barrier, inbox: Inbox) -> None:
        if barrier.id <= self.metrics.checkpoint_id:  # taken already (a restored sender's)
            return
        if self._aligning is None:
            self._aligning = barrier
            self._arrived = set()
        self._arrived.add(barrier.sender)
        await self._check_aligned(inbox)

    async def _check_aligned(self, inbox: Inbox) -> None:
        """Take the checkpoint being aligned once every sender sent its barrier or ended."""
        barrier = self._aligning
        if barrier is None or len(self._arrived | self._senders_ended) < self.expected_ends:
            return
        self._aligning = None
        if self.checkpoints is not None:
            await self._take_checkpoint(barrier.id, final=barrier.final)
        else:
            await self.emitter.barrier(Barrier(barrier.id, self.name, barrier.final))
            self.metrics.checkpoint_id = barrier.id
        inbox.release(barrier.id)

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
        if self._final_taken:  # stopped for good measure: what is open stays checkpointed
            await self.emitter.end()
            return
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

    def snapshot(self, *, emitter: bool = True) -> dict[str, Any]:
        """The reader's position, every operator's state and the emitter's."""
        return {
            "reader": self.reader.snapshot() if self.reader is not None else None,
            "ops": [op.snapshot() for op in self.ops],
            "emitter": self.emitter.snapshot() if emitter else None,
            "ended": sorted(self._senders_ended),  # their End is not sent again
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from a ``snapshot``."""
        if self.reader is not None:
            self.reader.restore(state["reader"])
        for op, op_state in zip(self.ops, state["ops"], strict=True):
            op.restore(op_state)
        if state.get("emitter") is not None:
            self.emitter.restore(state["emitter"])
        self._senders_ended = set(state.get("ended", ()))

    def restore_bytes(self, data: bytes, checkpoint_id: int) -> None:
        """Resume from the part of checkpoint ``checkpoint_id`` this instance wrote."""
        self.restore(pickle.loads(data))
        self.metrics.checkpoint_id = checkpoint_id
