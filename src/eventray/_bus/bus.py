"""The bus: what ``er.connect`` returns, owner of topics, feeds and background tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from eventray._connectors.registry import registry
from eventray._model.callables import describe_target
from eventray._model.errors import ClosedError, ConfigError, StageFailed, TransportError
from eventray._model.event import DeadLetter, Event, describe, now_ms
from eventray._model.protocols import Operator, Source
from eventray._runtime.checkpoint_store import DirectoryStore, open_store
from eventray._runtime.checkpoints import CheckpointSettings, check_shape
from eventray._runtime.plan import DEAD_LETTERS, JobPlan, Node, compile_stages
from eventray._runtime.readers import (
    CollectionReader,
    ConnectorReader,
    Reader,
    TextFileReader,
    TopicReader,
)
from eventray._runtime.tasks import TaskOwner
from eventray._streams.job import Job
from eventray._streams.stream import CheckpointRequest, Stream
from eventray._topics.adapters import (
    ProcessorSubscriber,
    TopicSubscriber,
)
from eventray._topics.protocols import Transport
from eventray._topics.subscriber import Failures, Subscriber
from eventray._topics.topic import Topic

from .adapting import callable_subscriber, known_subscriber, operator_for
from .context import BusStageContext
from .feeds import Feed

log = logging.getLogger("eventray")

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/>]{1,200}$")


class Bus:
    """A connection to a transport: topics by name, streams and the jobs running them.

    Use ``async with er.connect(...) as bus:`` or call ``await bus.close()``. Closing drains
    what was published (up to ``close_timeout`` seconds), then stops sources, subscribers and
    every background task the bus started. Each topic buffers up to ``buffer_size`` events
    and hands them to the transport in batches of up to ``max_batch`` (by default the
    transport's batch size, and twice that).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        buffer_size: int | None = None,
        max_batch: int | None = None,
        close_timeout: float = 30.0,
    ) -> None:
        if max_batch is None:
            max_batch = transport.batch_size
        if buffer_size is None:
            buffer_size = max(1000, 2 * max_batch) if isinstance(max_batch, int) else 1000
        for name, value in (("buffer_size", buffer_size), ("max_batch", max_batch)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive int, got {value!r}", field=name)
        if close_timeout <= 0:
            raise ConfigError(f"must be positive, got {close_timeout!r}", field="close_timeout")
        self.transport = transport
        self.buffer_size = buffer_size
        self.max_batch = max_batch
        self.close_timeout = close_timeout
        self._tasks = TaskOwner(f"bus:{transport.name}")
        self._feeds = TaskOwner(f"feeds:{transport.name}")
        self._topics: dict[str, Topic[Any]] = {}
        self._internal: list[Topic[Any]] = []
        self._attached: dict[tuple[str, str], object] = {}  # (topic, "source"|"sink") -> spec
        self._jobs: set[Job] = set()
        self._running_feeds: list[Feed] = []
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._closing = False
        self._close_done: asyncio.Future[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Bus {self.transport.name} topics={len(self._topics)}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def closing(self) -> bool:
        """Whether ``close()`` began: publishing from outside is refused from then on."""
        return self._closing

    # topics

    def topic(
        self,
        name: str,
        *,
        source: object = None,
        sink: object = None,
        operator: object = None,
    ) -> Topic[Any]:
        """The topic called ``name`` (created on first use).

        ``source`` (a source connector or ``{"kind": ...}`` config) feeds it once it has a
        subscriber; ``sink`` subscribes a sink; ``operator`` (a callable, async callable,
        ``Operator`` or transport-specific kind such as a Ray actor) makes it an operator
        topic that publishes what the operator returns for each event, dropping ``None``.
        """
        self._check_open()
        if not isinstance(name, str) or not _TOPIC_NAME.match(name):
            raise ConfigError(
                f"topic names are 1-200 letters, digits or . _ - / >, got {name!r}",
                field="name",
            )
        topic = self._topics.get(name)
        if topic is not None and operator is not None:
            raise ConfigError(
                f"topic {name!r} already exists; operator= is only accepted when it is created",
                field="operator",
            )
        built_source = self._new_attachment(name, "source", source)
        built_sink = self._new_attachment(name, "sink", sink)
        if topic is None:
            processor = operator_for(self.transport, operator) if operator is not None else None
            topic = self._new_topic(name)
            if processor is not None:
                entry = self._new_topic(f"{name}>in")
                self._internal.append(entry)
                entry.subscribe(
                    ProcessorSubscriber(processor, topic), name=f"operator:{processor.name}"
                )
                topic._input = entry
            self._topics[name] = topic
        if built_sink is not None:
            topic.subscribe(built_sink)
            self._attached[(name, "sink")] = dict(sink) if isinstance(sink, Mapping) else sink
        if built_source is not None:
            topic._attach_source(built_source)
            self._attached[(name, "source")] = (
                dict(source) if isinstance(source, Mapping) else source
            )
        return topic

    def _new_attachment(self, name: str, role: Literal["source", "sink"], spec: object) -> Any:
        """``spec`` built, the first time it is given for this topic's ``role``; None when
        there is none or it is the one given before (so repeating ``bus.topic`` is harmless)."""
        if spec is None:
            return None
        given = self._attached.get((name, role))
        if given is not None:
            if given is spec or (isinstance(spec, Mapping) and given == dict(spec)):
                return None
            raise ConfigError(
                f"topic {name!r} already has a {role}; {role}= must be the same one every time "
                f"(subscribe more sinks with topic >> sink, feed more sources with another topic)",
                field=role,
            )
        return registry.build(spec, role=role)

    @property
    def dead_letters(self) -> Topic[DeadLetter]:
        """The ``dead-letters`` topic: records a subscriber, operator or stage failed on."""
        return self.topic(DEAD_LETTERS)

    def topics(self) -> list[str]:
        """The names of the topics this bus has used."""
        return sorted(self._topics)

    def _new_topic(self, name: str) -> Topic[Any]:
        backend = self.transport.topic_backend(name)
        return Topic(self, name, backend, buffer_size=self.buffer_size, max_batch=self.max_batch)

    # adapting what users pass

    def _adapt_subscriber(
        self, target: object, topic: Topic[Any], *, events: bool
    ) -> tuple[Subscriber, object]:
        known = known_subscriber(self.transport, target)
        if known is not None:
            return known
        if isinstance(target, Operator):
            operator_topic = self.topic(self._fresh_name(f"{topic.name}>{type(target).__name__}"),
                                        operator=target)
            return TopicSubscriber(operator_topic), operator_topic
        return callable_subscriber(self.transport, target, events=events), target

    def _fresh_name(self, base: str) -> str:
        name, n = base, 1
        while name in self._topics:
            n += 1
            name = f"{base}.{n}"
        return name

    # streams

    def from_values(self, *values: Any) -> Stream:
        """A bounded stream of ``values``."""
        return self._stream(CollectionReader(list(values)))

    def from_collection(self, values: Iterable[Any]) -> Stream:
        """A stream of the items of ``values`` (a sequence, or any iterable read lazily)."""
        return self._stream(CollectionReader(values))

    def read_text_file(self, path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Stream:
        """A bounded stream of the lines of a text file (without line endings)."""
        return self._stream(TextFileReader(os.fspath(path), encoding))

    def from_topic(self, topic: str | Topic[Any]) -> Stream:
        """An unbounded stream of what is published to ``topic`` once the stream runs."""
        name = topic.name if isinstance(topic, Topic) else topic
        self.topic(name)  # validates the name
        return self._stream(TopicReader(name))

    def from_source(self, source: object) -> Stream:
        """A stream read from a source connector (instance or ``{"kind": ...}`` config)."""
        return self._stream(ConnectorReader(registry.build(source, role="source")))

    def _stream(self, reader: Reader) -> Stream:
        self._check_open()
        return Stream(self, Node("source", reader=reader))

    async def _run_stream(self, node: Node, name: str, *, parallelism: int, batch_size: int,
                          linger: float, on_error: str,
                          checkpoints: CheckpointRequest | None = None) -> Job:
        self._check_open()
        stages = compile_stages(node, parallelism,
                                driver_boundaries=not self.transport.in_process)
        plan = JobPlan(name, stages, batch_size, linger, on_error)
        if checkpoints is not None:
            plan.checkpoints = await _checkpoint_settings(plan, checkpoints)
        await self._ensure_open()
        job = Job(name, await self.transport.run_job(plan, BusStageContext(self)),
                  self._jobs.discard)
        self._jobs.add(job)
        return job

    # dead letters

    def _failure_handler(self, topic: str) -> Callable[[Failures, str], Awaitable[None]]:
        if topic == DEAD_LETTERS:
            return self._log_failures
        return self._dead_letter

    async def _log_failures(self, failures: Failures, stage: str) -> None:
        event, error = failures[0]
        log.warning(
            "%s failed on %d event(s), first %r: %s",
            stage, len(failures), getattr(event, "value", event), describe(error),
        )

    async def _dead_letter(self, failures: Failures, stage: str) -> None:
        await self._log_failures(failures, stage)
        await self._publish_dead_letters([
            DeadLetter.of(event, error, stage) if isinstance(event, Event)
            else DeadLetter(event, describe(error), stage)
            for event, error in failures
        ])

    async def _publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        events = [Event(letter, letter.key, letter.ts or now_ms()) for letter in letters]
        try:
            await self.dead_letters._publish_events(events)
        except ClosedError:
            log.warning("bus closed: %d dead letter(s) from %s dropped",
                        len(letters), letters[0].stage)

    # sources

    def _start_feed(self, topic: Topic[Any], source: Source) -> None:
        name = f"feed:{topic.name}:{getattr(source, 'kind', '') or describe_target(source)}"
        running = Feed(topic, source, BusStageContext(self), self.max_batch)
        self._running_feeds.append(running)
        self._feeds.spawn(running.run(), name=name)

    # lifecycle

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:
                self._check_open()
                await self.transport.open()
                self._opened = True

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the bus is closed")

    async def close(self, *, drain: bool = True) -> None:
        """Close the bus. With ``drain`` (a graceful close) nothing a publish accepted is
        lost: topic sources stop taking new records (what they took is published), what was
        published reaches every subscriber (streams' subscriptions included), running jobs
        drain, and what they emitted (output topics, dead letters) is delivered; then
        everything stops. Each phase is bounded by ``close_timeout`` seconds. Without
        ``drain``, everything stops at once. A job that fails while closing has its
        ``StageFailed`` logged (once); ``job.wait()`` and ``job.stop()`` raise it."""
        if self._close_done is not None:  # closed, or a close is under way: wait for it
            await asyncio.shield(self._close_done)
            return
        self._closing = True
        self._close_done = asyncio.get_running_loop().create_future()
        for topic in self._all_topics():
            topic._outbox.wake_putters()  # publishers waiting for room are refused now
        try:
            if drain and any(topic._pump is not None for topic in self._all_topics()):
                await self._ensure_open()
            await self._stop_feeds(drain)
            if drain:
                await self._drain(self._all_topics())
            await self._stop_jobs(drain)
            if drain:
                await self._drain(self._all_topics())
        finally:
            try:
                await self._stop_jobs(drain=False)  # only a cancelled close leaves any running
                self._closed = True
                for topic in self._all_topics():
                    await topic._close()
                await self._tasks.aclose()
                if self._opened:
                    await self.transport.close()
            finally:
                self._closed = True
                self._close_done.set_result(None)

    async def _stop_feeds(self, drain: bool) -> None:
        if drain:
            for running in self._running_feeds:
                running.stop_reading()
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self._feeds.join()
            except TimeoutError:
                log.warning("bus close: topic sources did not stop within %.1fs; cancelled",
                            self.close_timeout)
        await self._feeds.aclose()

    def _all_topics(self) -> list[Topic[Any]]:
        return [*self._internal, *self._topics.values()]

    async def _stop_jobs(self, drain: bool) -> None:
        for job in list(self._jobs):
            try:
                try:
                    async with asyncio.timeout(self.close_timeout if drain else None):
                        await job.stop(drain=drain)
                except TimeoutError:
                    log.warning("bus close: job %r did not drain within %.1fs; stopping it",
                                job.name, self.close_timeout)
                    await job.stop(drain=False)
            except StageFailed:
                pass  # the job logged it when it failed; wait() and stop() raise it
            except TransportError as exc:
                log.warning("bus close: job %r could not be stopped: %s", job.name, exc)

    async def _drain(self, topics: list[Topic[Any]]) -> None:
        if not self._opened:
            return
        try:
            async with asyncio.timeout(self.close_timeout):
                for topic in topics:
                    if not topic._closed:
                        await topic._flush(set())
        except TimeoutError:
            log.warning(
                "bus close: delivery did not finish within %.1fs; undelivered events dropped",
                self.close_timeout,
            )

    async def __aenter__(self) -> Bus:
        await self._ensure_open()
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        await self.close(drain=exc_type is None)


async def _checkpoint_settings(plan: JobPlan, request: CheckpointRequest) -> CheckpointSettings:
    """The store opened, and the checkpoint to resume from (if asked and there is one)."""
    store = open_store(request.store)
    if isinstance(store, DirectoryStore):  # fail now, not at the first checkpoint
        try:
            await asyncio.to_thread(store.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the directory {str(store.root)!r}: "
                              f"{describe(exc)}", field="checkpoint_store") from exc
    latest = await store.latest(plan.name)
    restored = latest if request.resume else None
    if restored is not None:
        check_shape(restored, plan.instance_names())
        log.info("job %s resumes from checkpoint %d", plan.name, restored.id)
    elif request.resume:
        log.info("job %s: no checkpoint to resume from; starting fresh", plan.name)
    elif latest is not None:
        log.info("job %s starts fresh (resume=False); its checkpoints go on from %d",
                 plan.name, latest.id + 1)
    # after every checkpoint the store holds of the job (also corrupt or partial ones, when
    # the store can say: ``highest_id``), so no id is written twice
    highest = getattr(store, "highest_id", None)
    top = await highest(plan.name) if callable(highest) else 0
    first_id = max(latest.id if latest is not None else 0, top) + 1
    return CheckpointSettings(request.interval, store, restored, first_id=first_id)
