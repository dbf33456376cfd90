"""The job backend interface, and running every stage of a job as asyncio tasks in this
process (what the memory transport does)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any

from eventray._model.errors import StageFailed
from eventray._model.event import describe

from .alignment import AligningInbox
from .checkpoints import CheckpointCoordinator
from .context import StageContext
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

    def __init__(self, sender: str, outputs: list[tuple[StagePlan, list[AligningInbox]]]):
        super().__init__(sender, [stage.exchange for stage, _ in outputs],
                         [len(inboxes) for _, inboxes in outputs])
        self.inboxes = [inboxes for _, inboxes in outputs]

    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        await self.inboxes[output][receiver].put(self.sender, items)


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
        self.coordinator: CheckpointCoordinator | None = None
        self._coordinating: asyncio.Task[None] | None = None

    async def start(self) -> LocalJob:
        plan = self.plan
        names = plan.stage_names()
        inboxes = {
            stage.index: [AligningInbox(self.inbox_batches) for _ in range(stage.parallelism)]
            for stage in plan.stages
            if stage.reader is None
        }
        if plan.checkpoints is not None:
            self.coordinator = CheckpointCoordinator(
                plan.name, plan.instance_names(), plan.checkpoints,
                trigger=self._trigger, notify=self._notify)
        pairs: list[tuple[StageRunner, AligningInbox | None]] = []
        for stage in plan.stages:
            outputs = [(plan.stages[o], inboxes[o]) for o in stage.outputs]
            for index in range(stage.parallelism):
                sender = f"{plan.name}.{names[stage.index]}.{index}"
                emitter = ChannelEmitter(sender, outputs) if outputs else NullEmitter()
                runner = StageRunner(
                    stage, index, job=plan.name, stage_name=names[stage.index],
                    expected_ends=stage.upstream_instances(plan.stages), ctx=self.ctx,
                    emitter=emitter, batch_size=plan.batch_size, linger=plan.linger,
                    on_error=plan.on_error, checkpoints=self.coordinator,
                )
                if plan.checkpoints is not None:
                    part = plan.checkpoints.restored_part(runner.name)
                    if part is not None:
                        assert plan.checkpoints.restored is not None
                        runner.restore_bytes(part, plan.checkpoints.restored.id)
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
        if self.coordinator is not None:
            self._coordinating = self._tasks.spawn(self.coordinator.run(), name="checkpoints")
        return self

    async def _trigger(self, checkpoint_id: int, final: bool) -> None:
        for runner in self.runners:
            runner.request_checkpoint(checkpoint_id, final=final)

    async def _notify(self, checkpoint_id: int) -> None:
        for runner in self.runners:
            await runner.checkpoint_complete(checkpoint_id)

    async def _run(self, runner: StageRunner, inbox: AligningInbox | None) -> None:
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
            for task in [*self._running, self._coordinating]:
                if task is not None and task is not asyncio.current_task():
                    task.cancel()

    async def wait(self) -> None:
        assert self._finished is not None
        await asyncio.shield(self._finished)
        if self._coordinating is not None and self._failure is None:
            await asyncio.wait({self._coordinating})  # it writes the job's end, then returns
        await self._tasks.aclose()
        if self._failure is not None:
            raise self._failure

    async def stop(self, *, drain: bool) -> None:
        if drain:
            if self.coordinator is not None and not self.done:
                await self.coordinator.final()  # the sources drain, then take it
            for runner in self.runners:
                runner.request_stop()
            assert self._finished is not None
            await asyncio.shield(self._finished)
            if self._coordinating is not None and self._failure is None:
                await asyncio.wait({self._coordinating})  # the last checkpoint is written
        await self._tasks.aclose()
        if self._failure is not None:
            raise self._failure
        if drain and self.coordinator is not None:
            self.coordinator.raise_final_error()

    def metrics(self) -> Metrics:
        job = self.coordinator.metrics() if self.coordinator is not None else {}
        return {runner.name: {**runner.metrics.as_dict(), **job} for runner in self.runners}

    @property
    def done(self) -> bool:
        return self._finished is not None and self._finished.done()
