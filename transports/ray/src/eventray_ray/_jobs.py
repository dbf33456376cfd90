"""Running a stream on Ray: stage actors, driver-side stages, supervision and clean-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from eventray import ConfigError, StageFailed
from eventray.spi import (
    Exchange,
    JobBackend,
    JobPlan,
    Metrics,
    StageContext,
    StagePlan,
    StageRunner,
    TaskOwner,
    describe,
)

from ._connection import kill_actors
from ._stage_actor import (
    ActorReceiver,
    HeldReceiver,
    PulledInbox,
    Receiver,
    StageActor,
    StageSpec,
    emitter_for,
)

if TYPE_CHECKING:
    from ._transport import RayTransport

log = logging.getLogger("eventray")

StageActorClass = ray.remote(StageActor)


class RayJob(JobBackend):
    """Stage instances as named actors ``<job>.<stage>.<index>``; stages that must run in the
    driver (sinks that call back into it, in-memory sources) run here as tasks, taking their
    input from the actors before them."""

    def __init__(self, plan: JobPlan, ctx: StageContext, transport: RayTransport) -> None:
        self.plan = plan
        self.ctx = ctx
        self.transport = transport
        self.names = plan.stage_names()
        self._actors: dict[str, Any] = {}  # name -> handle, every actor of this job
        self._runs: dict[str, Any] = {}  # name -> ObjectRef of run(), for stage actors
        self._local: list[StageRunner] = []
        self._local_tasks: list[asyncio.Task[None]] = []
        self._tasks = TaskOwner(f"ray-job:{plan.name}")
        self._stopping = False
        self._metrics: Metrics = {}
        self._failure: StageFailed | None = None
        self._supervisor: asyncio.Task[None] | None = None

    def _actor_name(self, stage: StagePlan, index: int) -> str:
        return f"{self.plan.name}.{self.names[stage.index]}.{index}"

    def _spec(self, stage: StagePlan, index: int) -> StageSpec:
        plan = self.plan
        outputs: list[tuple[Exchange, list[str] | None]] = []
        for o in stage.outputs:
            receiving = plan.stages[o]
            names = (None if receiving.placement == "driver" else
                     [self._actor_name(receiving, i) for i in range(receiving.parallelism)])
            outputs.append((receiving.exchange, names))
        options = self.transport.options
        return StageSpec(
            job=plan.name, stage=stage, stage_name=self.names[stage.index], index=index,
            outputs=outputs, expected_ends=stage.upstream_instances(plan.stages),
            batch_size=plan.batch_size, linger=plan.linger, on_error=plan.on_error,
            namespace=options.namespace, credits=options.credits,
        )

    async def start(self) -> RayJob:
        for topic in self.plan.topics_used():
            await self.transport.topic_actor(topic)
        options = self.transport.options
        actor_stages = [s for s in self.plan.stages if s.placement != "driver"]
        for stage in actor_stages:
            for index in range(stage.parallelism):
                spec = self._spec(stage, index)
                self._actors[spec.actor_name] = StageActorClass.options(
                    name=spec.actor_name, namespace=options.namespace,
                    num_cpus=options.stage_num_cpus, max_concurrency=1000,
                    runtime_env=options.runtime_env,
                ).remote(spec)
        try:
            await asyncio.gather(*(handle.ready.remote() for handle in self._actors.values()))
            await asyncio.gather(*(handle.open.remote() for handle in self._actors.values()))
            await self._start_driver_stages()
        except BaseException as exc:
            await self._kill_all()
            await self._tasks.aclose()
            if isinstance(exc, ValueError) and "already" in str(exc):
                raise ConfigError(f"a job named {self.plan.name!r} is already running",
                                  field="name") from exc
            raise
        self._runs = {name: handle.run.remote() for name, handle in self._actors.items()}
        self._supervisor = self._tasks.spawn(self._supervise(), name="supervise")
        return self

    async def _start_driver_stages(self) -> None:
        """Stages placed in the driver run here; each takes what its upstream actors hold
        for it through a pulling task of its own."""
        plan, options = self.plan, self.transport.options
        driver = [s for s in plan.stages if s.placement == "driver"]
        inboxes = {(s.index, i): PulledInbox(8) for s in driver if s.reader is None
                   for i in range(s.parallelism)}
        for stage in driver:
            for index in range(stage.parallelism):
                name = self._actor_name(stage, index)
                receivers: list[list[Receiver]] = []
                for o in stage.outputs:
                    receiving = plan.stages[o]
                    receivers.append([
                        HeldReceiver(inboxes[(o, i)].channel) if receiving.placement == "driver"
                        else ActorReceiver(self._actors[self._actor_name(receiving, i)], name,
                                           options.credits)
                        for i in range(receiving.parallelism)
                    ])
                runner = StageRunner(
                    stage, index, job=plan.name, stage_name=self.names[stage.index],
                    expected_ends=stage.upstream_instances(plan.stages),
                    ctx=self.ctx,
                    emitter=emitter_for(name, [plan.stages[o].exchange for o in stage.outputs],
                                        receivers),
                    batch_size=plan.batch_size, linger=plan.linger, on_error=plan.on_error,
                )
                await runner.open()
                inbox = inboxes.get((stage.index, index))
                self._local.append(runner)
                self._local_tasks.append(self._tasks.spawn(self._watch_local(runner, inbox),
                                                           name=runner.name))
                for upstream in (plan.stages[u] for u in stage.inputs):
                    if upstream.placement == "driver" or inbox is None:
                        continue
                    output = upstream.outputs.index(stage.index)
                    for i in range(upstream.parallelism):
                        handle = self._actors[self._actor_name(upstream, i)]
                        self._local_tasks.append(self._tasks.spawn(
                            self._watch_local_pull(runner.name, inbox.pull(
                                handle, output, index, plan.batch_size)),
                            name=f"{runner.name}<{i}",
                        ))

    async def _watch_local_pull(self, stage: str, pulling: Coroutine[Any, Any, None]) -> None:
        try:
            await pulling
        except RayActorError as exc:
            self._fail(StageFailed(stage, f"a stage actor it reads from died ({exc})",
                                   self.plan.name))

    async def _watch_local(self, runner: StageRunner, inbox: PulledInbox | None) -> None:
        try:
            await runner.run(inbox)
        except StageFailed as failed:
            self._fail(failed)
        except RayActorError as exc:
            self._fail(StageFailed(runner.name, f"a stage actor it talks to died ({exc})",
                                   self.plan.name))
        except Exception as exc:
            self._fail(StageFailed(runner.name, describe(exc), self.plan.name))

    async def _watch(self, name: str, ref: Any) -> None:
        try:
            self._metrics[name] = await ref
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, StageFailed):
                self._fail(cause)
            else:
                self._fail(StageFailed(name, describe(cause if isinstance(cause, BaseException)
                                                      else exc), self.plan.name))
        except RayActorError as exc:
            self._fail(StageFailed(name, f"the stage actor died ({type(exc).__name__})",
                                   self.plan.name))

    def _fail(self, failure: StageFailed) -> None:
        if self._failure is None and not self._stopping:
            self._failure = failure
            log.error("job %s: %s", self.plan.name, failure)
            self._abort()

    def _abort(self) -> None:
        for handle in self._actors.values():
            ray.kill(handle, no_restart=True)
        for task in self._local_tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _supervise(self) -> None:
        poller = self._tasks.spawn(self._poll_metrics(), name="metrics")
        await asyncio.gather(*(self._watch(name, ref) for name, ref in self._runs.items()),
                             *self._local_tasks, return_exceptions=True)
        poller.cancel()
        for runner in self._local:
            self._metrics[runner.name] = runner.metrics.as_dict()
        await self._kill_all()

    async def _poll_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for name, ref in [(n, self._actors[n].metrics.remote()) for n in self._runs]:
                try:
                    self._metrics[name] = await ref
                except (RayActorError, RayTaskError):
                    pass

    async def _kill_all(self) -> None:
        await kill_actors(self._actors, self.transport.options.namespace)

    async def wait(self) -> None:
        assert self._supervisor is not None
        await asyncio.shield(self._supervisor)
        await self._tasks.aclose()
        if self._failure is not None:
            raise self._failure

    async def stop(self, *, drain: bool) -> None:
        if drain:
            for name in self._runs:
                self._actors[name].request_stop.remote()
            for runner in self._local:
                runner.request_stop()
        else:
            self._stopping = True
            self._abort()
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)
        await self._tasks.aclose()
        if self._failure is not None:
            raise self._failure

    def metrics(self) -> Metrics:
        live = {runner.name: runner.metrics.as_dict() for runner in self._local}
        return {**self._metrics, **live}

    @property
    def done(self) -> bool:
        return self._supervisor is not None and self._supervisor.done()
