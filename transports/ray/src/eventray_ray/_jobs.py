"""Running a stream on Ray: stage actors, driver-side stages, supervision and clean-up."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from eventray import ConfigError, StageFailed
from eventray._event import describe
from eventray._job import BusStageContext, JobBackend, Metrics
from eventray._ops import TopicSinkOp
from eventray._plan import JobPlan, StagePlan
from eventray._readers import TopicReader
from eventray._runtime import StageRunner
from eventray._tasks import TaskOwner

from ._stage_actor import RelayInbox, StageActor, StageSpec, emitter_for

if TYPE_CHECKING:
    from eventray import Bus

    from ._transport import RayTransport

log = logging.getLogger("eventray")

StageActorClass = ray.remote(StageActor)


def _topics_used(plan: JobPlan) -> set[str]:
    names = {"dead-letters"}
    for stage in plan.stages:
        if isinstance(stage.reader, TopicReader):
            names.add(stage.reader.topic)
        names.update(op.topic_name for op in stage.ops if isinstance(op, TopicSinkOp))
    return names


class RayJob(JobBackend):
    """Stage instances as named actors ``<job>.<stage>.<index>``; stages that must run in the
    driver (sinks that call back into it, in-memory sources) run here as tasks."""

    def __init__(self, plan: JobPlan, bus: Bus, transport: RayTransport) -> None:
        self.plan = plan
        self.bus = bus
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

    def _spec(self, stage: StagePlan, index: int, *, relay: bool) -> StageSpec:
        plan = self.plan
        outputs = [
            (plan.stages[o].exchange,
             [self._actor_name(plan.stages[o], i) for i in range(plan.stages[o].parallelism)])
            for o in stage.outputs
        ]
        options = self.transport.options
        return StageSpec(
            job=plan.name, stage=stage, stage_name=self.names[stage.index], index=index,
            outputs=outputs, expected_ends=stage.upstream_instances(plan.stages),
            batch_size=plan.batch_size, linger=plan.linger, on_error=plan.on_error,
            namespace=options.namespace, credits=options.credits, relay=relay,
        )

    async def start(self) -> RayJob:
        for topic in _topics_used(self.plan):
            await self.bus.topic(topic)._backend.actor()  # type: ignore[attr-defined]
        options = self.transport.options
        specs = []
        for stage in self.plan.stages:
            in_driver = stage.placement == "driver"
            for index in range(stage.parallelism):
                if in_driver and stage.reader is not None:
                    continue  # a driver-side source needs no inbox
                spec = self._spec(stage, index, relay=in_driver)
                specs.append(spec)
                self._actors[spec.actor_name] = StageActorClass.options(
                    name=spec.actor_name, namespace=options.namespace,
                    num_cpus=options.stage_num_cpus, max_concurrency=1000,
                    runtime_env=options.runtime_env,
                ).remote(spec)
        try:
            await asyncio.gather(*(handle.ready.remote() for handle in self._actors.values()))
            await asyncio.gather(*(self._actors[s.actor_name].open.remote()
                                   for s in specs if not s.relay))
            for stage in self.plan.stages:
                if stage.placement == "driver":
                    for index in range(stage.parallelism):
                        await self._start_local(stage, index)
        except BaseException as exc:
            await self._kill_all()
            await self._tasks.aclose()
            if isinstance(exc, ValueError) and "already" in str(exc):
                raise ConfigError(f"a job named {self.plan.name!r} is already running",
                                  field="name") from exc
            raise
        self._runs = {s.actor_name: self._actors[s.actor_name].run.remote()
                      for s in specs if not s.relay}
        self._supervisor = self._tasks.spawn(self._supervise(), name="supervise")
        return self

    async def _start_local(self, stage: StagePlan, index: int) -> None:
        spec = self._spec(stage, index, relay=True)
        outputs = [(exchange, [ray.get_actor(n, namespace=spec.namespace) for n in names])
                   for exchange, names in spec.outputs]
        runner = StageRunner(
            stage, index, job=self.plan.name, stage_name=spec.stage_name,
            expected_ends=spec.expected_ends, ctx=BusStageContext(self.bus),
            emitter=emitter_for(spec.actor_name, outputs, spec.credits),
            batch_size=spec.batch_size, linger=spec.linger, on_error=spec.on_error,
        )
        await runner.open()
        inbox = RelayInbox(self._actors[spec.actor_name]) if stage.reader is None else None
        self._local.append(runner)
        self._local_tasks.append(self._tasks.spawn(self._watch_local(runner, inbox),
                                                   name=runner.name))

    async def _watch_local(self, runner: StageRunner, inbox: RelayInbox | None) -> None:
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
        """Kill every actor of the job and wait (up to 10 s) until their names are free."""
        for handle in self._actors.values():
            ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + 10
        namespace = self.transport.options.namespace
        for name in self._actors:
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(name, namespace=namespace)
                except ValueError:
                    break
                await asyncio.sleep(0.05)

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

    def metrics(self) -> Metrics:
        live = {runner.name: runner.metrics.as_dict() for runner in self._local}
        return {**self._metrics, **live}

    @property
    def done(self) -> bool:
        return self._supervisor is not None and self._supervisor.done()
