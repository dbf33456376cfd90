"""Running a stream on Ray: stage actors, driver-side stages, supervision and clean-up."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorAlreadyExistsError, RayActorError, RayError, RayTaskError

from eventray import ConfigError, StageFailed
from eventray.spi import (
    CheckpointCoordinator,
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

from ._channels import ActorReceiver, Receiver
from ._connection import kill_actors
from ._errors import is_ray_failure, ray_errors
from ._stage_actor import (
    InboxReceiver,
    PulledInbox,
    RayEmitter,
    StageActor,
    StageSpec,
    emitter_for,
)

if TYPE_CHECKING:
    from ._session import RaySession

log = logging.getLogger("eventray")

StageActorClass = ray.remote(StageActor)
RESTART_TIMEOUT = 60.0  # seconds Ray may take to restart a stage actor that died


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


def _pending(runner: StageRunner) -> bool:
    return runner.checkpoint_pending


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
        self._specs: dict[str, StageSpec] = {}  # name -> what its actor runs
        self._runs: dict[str, Any] = {}  # name -> ObjectRef of run(), for stage actors
        self._local: list[StageRunner] = []
        self._local_tasks: list[asyncio.Task[None]] = []
        self._tasks = TaskOwner(f"ray-job:{plan.name}")
        self._stopping = False
        self._metrics: Metrics = {}
        self._failure: StageFailed | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.coordinator: CheckpointCoordinator | None = None
        self._coordinating: asyncio.Task[None] | None = None
        self._reporting: dict[str, asyncio.Task[None]] = {}  # name -> taking its reports
        self._restarts: dict[str, int] = {}  # name -> times restored after dying
        self._restores_done: dict[str, int] = {}  # the same, counted once each is done
        self._recovery = asyncio.Lock()  # one restore at a time; completions wait for it
        self._restored_event = asyncio.Event()  # set (and renewed) after every restore
        if plan.checkpoints is not None:
            self.coordinator = CheckpointCoordinator(
                plan.name, plan.instance_names(), plan.checkpoints,
                trigger=self._trigger, notify=self._notify)

    def _restored(self, name: str) -> tuple[bytes | None, int]:
        """The part of the checkpoint to resume from that ``name`` wrote, and its id."""
        settings = self.plan.checkpoints
        if settings is None or settings.restored is None:
            return None, 0
        return settings.restored_part(name), settings.restored.id

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
            checkpointing=plan.checkpoints is not None, replay_batches=options.replay_batches,
        )

    async def start(self) -> RayJob:
        for topic in self.plan.topics_used():
            await self.transport.topic_actor(topic)
        try:
            await asyncio.to_thread(self._create_actors)
            with ray_errors(f"starting job {self.plan.name!r}"):
                await asyncio.gather(*(h.ready.remote() for h in self._actors.values()))
                await asyncio.gather(*(h.open.remote(self._specs[name],
                                                     *self._restored(name))
                                       for name, h in self._actors.items()))
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
        if self.coordinator is not None:
            for name in self._runs:
                self._reporting[name] = self._tasks.spawn(self._take_reports(name),
                                                          name=f"reports<{name}")
            self._coordinating = self._tasks.spawn(self.coordinator.run(), name="checkpoints")
        self._supervisor = self._tasks.spawn(self._supervise(), name="supervise")
        return self

    async def _take_reports(self, name: str) -> None:
        """Hand what a stage actor reports to the coordinator, until the stage ended."""
        assert self.coordinator is not None
        while True:
            try:
                reports = await self._actors[name].take_reports.remote()
            except RayError:  # the actor died: its watcher reports that
                return
            for kind, checkpoint_id, state in reports:
                if kind == "ack":
                    await self.coordinator.acknowledge(name, checkpoint_id, state)
                elif kind == "hurry":
                    self.coordinator.hurry()
                else:
                    await self.coordinator.finished(name, state)
                    return

    async def _trigger(self, checkpoint_id: int, final: bool) -> None:
        calls = [self._actors[name].trigger_checkpoint.remote(checkpoint_id, final)
                 for name in self._runs]
        for runner in self._local:
            runner.request_checkpoint(checkpoint_id, final=final)
        await self._settle(calls, f"asking for checkpoint {checkpoint_id}")

    async def _notify(self, checkpoint_id: int) -> None:
        async with self._recovery:  # a restore picks its checkpoint before senders trim
            calls = [self._actors[name].checkpoint_complete.remote(checkpoint_id)
                     for name in self._runs]
            for runner in self._local:
                await runner.checkpoint_complete(checkpoint_id)
            await self._settle(calls, f"completing checkpoint {checkpoint_id}")

    async def _settle(self, calls: list[Any], doing: str) -> None:
        """Wait for calls to stage actors; one that died is its watcher's to report."""
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, Exception):
                log.debug("job %s: %s: %s", self.plan.name, doing, describe(result))

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
                    max_restarts=options.max_restarts if spec.checkpointing else 0,
                    max_task_retries=0,
                ).remote(spec.inbox_batches, spec.checkpointing)
                self._specs[spec.actor_name] = spec

    async def _start_driver_stages(self) -> None:
        """Stages placed in the driver run here; each takes what its upstream actors hold
        for it through a pulling task of its own."""
        plan = self.plan
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
                        InboxReceiver(inboxes[(o, i)].inbox, name)
                        if receiving.placement == "driver"
                        else self._actor_receiver(self._actor_name(receiving, i), name)
                        for i in range(receiving.parallelism)
                    ])
                runner = StageRunner(
                    stage, index, job=plan.name, stage_name=self.names[stage.index],
                    expected_ends=stage.upstream_instances(plan.stages),
                    ctx=self.ctx,
                    emitter=emitter_for(name, [plan.stages[o].exchange for o in stage.outputs],
                                        receivers),
                    batch_size=plan.batch_size, linger=plan.linger, on_error=plan.on_error,
                    checkpoints=self.coordinator,
                )
                state, checkpoint_id = self._restored(name)
                if state is not None:
                    runner.restore_bytes(state, checkpoint_id)
                if isinstance(runner.emitter, RayEmitter):
                    runner.emitter.overflow_when(functools.partial(_pending, runner))
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
                            self._watch_local_pull(runner.name, sender, functools.partial(
                                inbox.pull, self._actors[sender], sender, output, index,
                                plan.batch_size, self)),
                            name=f"{runner.name}<{i}",
                        ))

    def _actor_receiver(self, receiver: str, sender: str) -> ActorReceiver:
        """A driver-side stage's channel to a stage actor (with a replay buffer while
        checkpointing, so the actor can be restored)."""
        options = self.transport.options
        coordinator = self.coordinator
        return ActorReceiver(
            self._actors[receiver], receiver, sender, options.credits,
            replay_batches=options.replay_batches if coordinator is not None else None,
            hurry=coordinator.hurry if coordinator is not None else None)

    def epoch(self, name: str) -> int:
        """How many times the stage actor ``name`` was restored (and is running again)."""
        return self._restores_done.get(name, 0)

    async def restored_since(self, name: str, epoch: int) -> bool:
        """Wait until the stage actor ``name`` is restored after ``epoch``; False if the job
        gives up on it (it failed, or stops)."""
        if self.coordinator is None:
            return False
        while self._failure is None and not self._stopping:
            if self.epoch(name) > epoch:
                return True
            await self._restored_event.wait()
        return False

    async def _watch_local_pull(self, stage: str, sender: str,
                                pull: Callable[[], Awaitable[None]]) -> None:
        try:
            await pull()
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

    async def _watch(self, name: str) -> None:
        """Until the stage actor ``name`` ends; one that dies is restored while the job
        checkpoints (and has restores left), else the job fails."""
        while True:
            try:
                self._metrics[name] = await self._runs[name]
                if name in self._reporting:  # its end reaches the coordinator before it goes
                    await self._reporting[name]
                return
            except RayTaskError as exc:
                if isinstance(exc.cause, StageFailed):
                    await self._fail(exc.cause)
                else:
                    await self._fail(failed(name, "running", exc, self.plan.name))
                return
            except Exception as exc:  # the actor, its node or the cluster died
                if not self._can_restore(name, exc):
                    await self._fail(failed(name, "the stage actor", exc, self.plan.name))
                    return
            try:
                await self._restore(name)
            except RayActorError:  # it died again while being restored: once more
                continue
            except Exception as exc:
                await self._fail(failed(name, "restoring the stage actor", exc,
                                        self.plan.name))
                return

    def _can_restore(self, name: str, exc: BaseException) -> bool:
        return (self.coordinator is not None and isinstance(exc, RayActorError)
                and not self._stopping and self._failure is None and not self.transport.lost
                and self._restarts.get(name, 0) < self.transport.options.max_restarts)

    async def _restore(self, name: str) -> None:
        """Restore the stage actor ``name`` (Ray restarted its process) from the latest
        complete checkpoint, and have every instance sending to it send again what it sent
        since. The other stages keep running."""
        assert self.coordinator is not None
        async with self._recovery:
            if self._failure is not None or self._stopping:
                return
            epoch = self._restarts[name] = self._restarts.get(name, 0) + 1
            state, checkpoint_id = self.coordinator.part(name)
            log.warning("job %s: stage actor %s died; restoring it from %s (restore %d)",
                        self.plan.name, name,
                        f"checkpoint {checkpoint_id}" if state is not None else "its start",
                        epoch)
            handle = self._actors[name]
            await self._until_alive(name)
            generations: dict[str, int] = {}
            places: dict[str, list[int]] = {}
            senders = self._senders_to(name)
            for sender in senders:
                try:
                    if sender in self._actors:
                        prepared = await self._actors[sender].prepare_replay.remote(name)
                    else:
                        prepared = self._local_emitter(sender).prepare_replay(name)
                except RayActorError:  # it died too: once restored it sends its part again
                    continue
                generations[sender], places[sender] = prepared
            # a RayActorError here (it died again) goes back to _watch, which restores again
            await handle.open.remote(self._specs[name], state, checkpoint_id, epoch,
                                     generations, places)
            self._runs[name] = handle.run.remote()
            self._reporting[name] = self._tasks.spawn(self._take_reports(name),
                                                      name=f"reports<{name}")
            self._restores_done[name] = epoch  # driver stages take from it again: its
            self._restored_event.set()  # output must flow for the replay into it to go in
            self._restored_event = asyncio.Event()
            in_flight = self.coordinator.in_flight()
            if in_flight is not None:  # it lost the request (a source) or the note of it
                await handle.trigger_checkpoint.remote(*in_flight)
        # outside the lock: a replay can wait for a sender that died meanwhile to be restored
        # (senders keep what they sent until their replay is over, whatever completes)
        replays = [self._replay(sender, name) for sender in senders if sender in places]
        await asyncio.gather(*replays)  # together: one may wait on another's barrier

    async def _replay(self, sender: str, receiver: str) -> None:
        """Have ``sender`` send the restored ``receiver`` again what it may not have."""
        if sender not in self._actors:
            await self._local_emitter(sender).replay_to(receiver)
            return
        try:
            await self._actors[sender].replay_to.remote(receiver)
        except RayActorError:  # it died: once restored it sends its part again itself
            log.info("job %s: %s died while replaying to %s", self.plan.name, sender,
                     receiver)

    def _local_emitter(self, name: str) -> RayEmitter:
        """The emitter of the driver-side stage instance ``name`` (it sends to actors)."""
        runner = next(r for r in self._local if r.name == name)
        assert isinstance(runner.emitter, RayEmitter)
        return runner.emitter

    async def _until_alive(self, name: str) -> None:
        """Wait until Ray has restarted the actor ``name``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_TIMEOUT
        while True:
            try:
                await self._actors[name].ready.remote()
                return
            except RayActorError:
                if loop.time() > deadline or self._failure is not None or self._stopping:
                    raise
                await asyncio.sleep(0.1)

    def _senders_to(self, name: str) -> list[str]:
        """The stage instances that send to the instance ``name``."""
        stage = next(s for s in self.plan.stages for i in range(s.parallelism)
                     if self._actor_name(s, i) == name)
        return [self._actor_name(self.plan.stages[u], i) for u in stage.inputs
                for i in range(self.plan.stages[u].parallelism)]

    async def _fail(self, failure: StageFailed) -> None:
        if self._failure is None and not self._stopping:
            self._failure = failure
            log.error("job %s: %s", self.plan.name, failure)
            await self._abort()

    async def _abort(self) -> None:
        for task in [*self._local_tasks, self._coordinating]:
            if task is None:
                continue
            if task is not asyncio.current_task():
                task.cancel()
        await kill_actors(self._actors, self.transport.options.namespace)

    async def _supervise(self) -> None:
        poller = self._tasks.spawn(self._poll_metrics(), name="metrics")
        watched = [self._watch(name) for name in self._runs]
        results = await asyncio.gather(*watched, *self._local_tasks, return_exceptions=True)
        for result in results:  # the watchers report failures themselves; this is a backstop
            if isinstance(result, Exception):
                await self._fail(failed(self.plan.name, "supervising", result, self.plan.name))
        poller.cancel()
        for runner in self._local:
            self._metrics[runner.name] = runner.metrics.as_dict()
        if self._coordinating is not None and self._failure is None \
                and not self.transport.lost:  # sources commit the final checkpoint (acks,
            await asyncio.wait({self._coordinating})  # offsets) before their actors go
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
        if (self._coordinating is not None and self._failure is None
                and not self.transport.lost):
            await asyncio.wait({self._coordinating})  # it writes the job's end, then returns
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
            if self.coordinator is not None and not self.done:
                await self.coordinator.final()  # the sources drain, then take it
            for name in self._runs:
                self._actors[name].request_stop.remote()
            for runner in self._local:
                runner.request_stop()
        else:
            self._stopping = True
            await self._abort()
        if self._supervisor is not None:
            await self._supervised()
        if (drain and self._coordinating is not None and self._failure is None
                and not self.transport.lost):
            await asyncio.wait({self._coordinating})  # the last checkpoint is written
        await self._tasks.aclose()
        self._raise_failure()
        if drain and self.coordinator is not None:
            self.coordinator.raise_final_error()

    def metrics(self) -> Metrics:
        live = {runner.name: {**runner.metrics.as_dict(), "replay_buffered": getattr(
                    runner.emitter, "buffered", 0)} for runner in self._local}
        job = self.coordinator.metrics() if self.coordinator is not None else {}
        return {name: {**values, **job} for name, values in {**self._metrics, **live}.items()}

    @property
    def done(self) -> bool:
        return self._supervisor is not None and self._supervisor.done()
