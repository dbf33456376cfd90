"""Running a stream on Ray: stage actors, driver-side stages, supervision and clean-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorAlreadyExistsError, RayError, RayTaskError

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
from ._errors import is_ray_failure, ray_errors
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
    from ._session import RaySession

log = logging.getLogger("eventray")

StageActorClass = ray.remote(StageActor)


def failed(stage: str, doing: str, exc: BaseException, job: str) -> StageFailed:
    """``exc`` as the ``StageFailed`` of ``stage``, with ``exc`` as its cause: a Ray failure
    (an actor, object, node or the cluster lost) says so, user code's error is described."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        failure = StageFailed(stage, describe(exc.cause), job)
    elif is_ray_failure(exc):
        failure = StageFailed(stage, f"{doing}: Ray failed: {type(exc).__name__} "
                                     f"(the actor, its node or the cluster died)", job)
    else:
        failure = StageFailed(stage, describe(exc), job)
    failure.__cause__ = exc
    return failure


class RayJob(JobBackend):
    """Stage instances as named actors ``<job>.<stage>.<index>``; stages that must run in the
    driver (sinks that call back into it, in-memory sources) run here as tasks, taking their
    input from the actors before them."""

    def __init__(self, plan: JobPlan, ctx: StageContext, transport: RaySession) -> None:
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
        try:
            await asyncio.to_thread(self._create_actors)
            with ray_errors(f"starting job {self.plan.name!r}"):
                await asyncio.gather(*(h.ready.remote() for h in self._actors.values()))
                await asyncio.gather(*(h.open.remote() for h in self._actors.values()))
            await self._start_driver_stages()
        except BaseException as exc:
            await self._kill_all()
            await self._tasks.aclose()
            if isinstance(exc, ActorAlreadyExistsError):
                raise ConfigError(
                    f"a job named {self.plan.name!r} is already running on this Ray cluster "
                    f"(namespace {self.transport.options.namespace!r}); stop it or choose "
                    f"another name", field="name") from exc
            if isinstance(exc, RayTaskError) and isinstance(exc.cause, StageFailed):
                raise exc.cause from exc
            raise
        self._runs = {name: handle.run.remote() for name, handle in self._actors.items()}
        self._supervisor = self._tasks.spawn(self._supervise(), name="supervise")
        return self

    def _create_actors(self) -> None:
        """Create the stage actors (Ray registers each name with the cluster before
        returning, so this blocks: it runs in a worker thread). A name another job holds
        raises ``ActorAlreadyExistsError``; what was created before stays in ``_actors``."""
        options = self.transport.options
        for stage in (s for s in self.plan.stages if s.placement != "driver"):
            for index in range(stage.parallelism):
                spec = self._spec(stage, index)
                self._actors[spec.actor_name] = StageActorClass.options(
                    name=spec.actor_name, namespace=options.namespace,
                    num_cpus=options.stage_num_cpus, max_concurrency=1000,
                    runtime_env=options.runtime_env,
                ).remote(spec)

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
                        sender = self._actor_name(upstream, i)
                        self._local_tasks.append(self._tasks.spawn(
                            self._watch_local_pull(runner.name, sender, inbox.pull(
                                self._actors[sender], output, index, plan.batch_size)),
                            name=f"{runner.name}<{i}",
                        ))

    async def _watch_local_pull(self, stage: str, sender: str,
                                pulling: Coroutine[Any, Any, None]) -> None:
        try:
            await pulling
        except Exception as exc:
            if is_ray_failure(exc):  # the actor taken from died: it is the stage that failed
                failure = failed(sender, f"{stage} taking from it", exc, self.plan.name)
            else:
                failure = failed(stage, f"taking from {sender}", exc, self.plan.name)
            await self._fail(failure)

    async def _watch_local(self, runner: StageRunner, inbox: PulledInbox | None) -> None:
        try:
            await runner.run(inbox)
        except StageFailed as failure:
            await self._fail(failure)
        except Exception as exc:
            await self._fail(failed(runner.name, "running", exc, self.plan.name))

    async def _watch(self, name: str, ref: Any) -> None:
        try:
            self._metrics[name] = await ref
        except RayTaskError as exc:
            if isinstance(exc.cause, StageFailed):
                await self._fail(exc.cause)
            else:
                await self._fail(failed(name, "running", exc, self.plan.name))
        except Exception as exc:  # the actor, its node or the cluster died
            await self._fail(failed(name, "the stage actor", exc, self.plan.name))

    async def _fail(self, failure: StageFailed) -> None:
        if self._failure is None and not self._stopping:
            self._failure = failure
            log.error("job %s: %s", self.plan.name, failure)
            await self._abort()

    async def _abort(self) -> None:
        for task in self._local_tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await kill_actors(self._actors, self.transport.options.namespace)

    async def _supervise(self) -> None:
        poller = self._tasks.spawn(self._poll_metrics(), name="metrics")
        watched = [self._watch(name, ref) for name, ref in self._runs.items()]
        results = await asyncio.gather(*watched, *self._local_tasks, return_exceptions=True)
        for result in results:  # the watchers report failures themselves; this is a backstop
            if isinstance(result, Exception):
                await self._fail(failed(self.plan.name, "supervising", result, self.plan.name))
        poller.cancel()
        for runner in self._local:
            self._metrics[runner.name] = runner.metrics.as_dict()
        await self._kill_all()

    async def _poll_metrics(self) -> None:
        while not self.transport.lost:
            await asyncio.sleep(1.0)
            for name, ref in [(n, self._actors[n].metrics.remote()) for n in self._runs]:
                try:
                    self._metrics[name] = await ref
                except RayError as exc:  # the watcher of that actor reports its failure
                    log.debug("job %s: no metrics from %s: %s", self.plan.name, name, exc)

    async def _kill_all(self) -> None:
        await kill_actors(self._actors, self.transport.options.namespace)

    async def wait(self) -> None:
        await self._supervised()
        await self._tasks.aclose()
        self._raise_failure()

    async def _supervised(self) -> None:
        """Until the supervisor is done, or the cluster is lost (then Ray answers no more)."""
        assert self._supervisor is not None
        gone = self.transport.gone
        if gone is None:
            await asyncio.shield(self._supervisor)
            return
        lost = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({self._supervisor, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        self.transport.check()  # a lost cluster is a TransportError, never a clean end

    async def stop(self, *, drain: bool) -> None:
        if self.transport.lost:  # nothing is left to drain or to stop but this side
            self._stopping = True
            await self._tasks.aclose()
            self._raise_failure()
            return
        if drain:
            for name in self._runs:
                self._actors[name].request_stop.remote()
            for runner in self._local:
                runner.request_stop()
        else:
            self._stopping = True
            await self._abort()
        if self._supervisor is not None:
            await self._supervised()
        await self._tasks.aclose()
        self._raise_failure()

    def metrics(self) -> Metrics:
        live = {runner.name: runner.metrics.as_dict() for runner in self._local}
        return {**self._metrics, **live}

    @property
    def done(self) -> bool:
        return self._supervisor is not None and self._supervisor.done()
