"""The job backend interface, and running every stage of a job as asyncio tasks in this
process (what the memory transport does)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any

from eventray._model.errors import StageFailed
from eventray._model.event import describe

from .channel import BatchChannel
from .context import End, StageContext
from .emitters import NullEmitter, PartitioningEmitter
from .plan import JobPlan, StagePlan
from .runner import StageRunner
from .tasks import TaskOwner

log = logging.getLogger("eventray")

Metrics = dict[str, dict[str, float]]


class JobBackend(ABC):
    """A running stream as a transport runs it."""

    @abstractmethod
    async def wait(self) -> None:
        """Until every stage finished; raises ``StageFailed`` if one failed."""

    @abstractmethod
    async def stop(self, *, drain: bool) -> None:
        """Stop: with ``drain``, sources stop and what is in flight reaches the sinks.
        Raises ``StageFailed`` if a stage failed (before or while stopping)."""

    @abstractmethod
    def metrics(self) -> Metrics:
        """Counters per stage instance (``<job>.<stage>.<index>``)."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether every stage has finished."""


class ChannelEmitter(PartitioningEmitter):
    """Sends output to the inboxes of the next stages' instances, in this process."""

    def __init__(self, sender: str, outputs: list[tuple[StagePlan, list[BatchChannel[Any]]]]):
        super().__init__(sender, [stage.exchange for stage, _ in outputs],
                         [len(inboxes) for _, inboxes in outputs])
        self.inboxes = [inboxes for _, inboxes in outputs]

    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        inbox = self.inboxes[output][receiver]
        if isinstance(items[0], End):
            inbox.put_nowait(items, force=True)  # an end never waits for room
        else:
            await inbox.put(items)


class LocalJob(JobBackend):
    """Every stage instance as an asyncio task; bounded channels between them."""

    def __init__(self, plan: JobPlan, ctx: StageContext, *, inbox_batches: int = 8) -> None:
        self.plan = plan
        self.ctx = ctx
        self.inbox_batches = inbox_batches
        self.runners: list[StageRunner] = []
        self._tasks = TaskOwner(f"job:{plan.name}")
        self._failure: StageFailed | None = None
        self._finished: asyncio.Future[list[Any]] | None = None
        self._running: list[asyncio.Task[None]] = []

    async def start(self) -> LocalJob:
        plan = self.plan
        names = plan.stage_names()
        inboxes = {
            stage.index: [BatchChannel[Any](self.inbox_batches)
                          for _ in range(stage.parallelism)]
            for stage in plan.stages
            if stage.reader is None
        }
        pairs: list[tuple[StageRunner, BatchChannel[Any] | None]] = []
        for stage in plan.stages:
            outputs = [(plan.stages[o], inboxes[o]) for o in stage.outputs]
            for index in range(stage.parallelism):
                sender = f"{plan.name}.{names[stage.index]}.{index}"
                emitter = ChannelEmitter(sender, outputs) if outputs else NullEmitter()
                runner = StageRunner(
                    stage, index, job=plan.name, stage_name=names[stage.index],
                    expected_ends=stage.upstream_instances(plan.stages), ctx=self.ctx,
                    emitter=emitter, batch_size=plan.batch_size, linger=plan.linger,
                    on_error=plan.on_error,
                )
                self.runners.append(runner)
                pairs.append((runner, inboxes[stage.index][index] if stage.reader is None
                              else None))
        for runner, _ in pairs:
            await runner.open()
        self._running = [
            self._tasks.spawn(self._run(runner, inbox), name=runner.name)
            for runner, inbox in pairs
        ]
        self._finished = asyncio.gather(*self._running, return_exceptions=True)
        return self

    async def _run(self, runner: StageRunner, inbox: BatchChannel[Any] | None) -> None:
        try:
            await runner.run(inbox)
        except StageFailed as failed:
            self._fail(failed)
        except Exception as exc:
            failure = StageFailed(runner.name, describe(exc), job=self.plan.name)
            failure.__cause__ = exc
            self._fail(failure)

    def _fail(self, failure: StageFailed) -> None:
        if self._failure is None:
            self._failure = failure
            log.error("job %s: %s", self.plan.name, failure, exc_info=failure.__cause__)
            for task in self._running:
                if task is not asyncio.current_task():
                    task.cancel()

    async def wait(self) -> None:
        assert self._finished is not None
        await asyncio.shield(self._finished)
        if self._failure is not None:
            raise self._failure

    async def stop(self, *, drain: bool) -> None:
        if drain:
            for runner in self.runners:
                runner.request_stop()
            assert self._finished is not None
            await asyncio.shield(self._finished)
        else:
            await self._tasks.aclose()
        if self._failure is not None:
            raise self._failure

    def metrics(self) -> Metrics:
        return {runner.name: runner.metrics.as_dict() for runner in self.runners}

    @property
    def done(self) -> bool:
        return self._finished is not None and self._finished.done()
