"""The Stream API: a lazy graph of operators that ``run()`` turns into stages."""

from __future__ import annotations

import itertools
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eventray._connectors.registry import registry
from eventray._model.batch import Batch
from eventray._model.errors import ConfigError
from eventray._model.protocols import Operator, Sink
from eventray._operators.ops import (
    ApplyOp,
    CallableSinkOp,
    ConnectorSinkOp,
    TopicSinkOp,
    handler_op,
)
from eventray._operators.windows import (
    COUNT,
    Aggregation,
    Session,
    Sliding,
    Tumbling,
    WindowOp,
    WindowSpec,
    reducing,
)
from eventray._runtime.checkpoint_store import CheckpointStore
from eventray._runtime.operator import StreamOp, check_policy
from eventray._runtime.plan import Node
from eventray._topics.topic import Topic

if TYPE_CHECKING:
    from eventray._runtime.operator import OpContext

    from .job import Job


class _HasBatchSize(Protocol):
    @property
    def batch_size(self) -> int: ...


class StreamOwner(Protocol):
    """What a stream needs from the bus that made it."""

    @property
    def transport(self) -> _HasBatchSize: ...

    @property
    def closed(self) -> bool: ...

    def _check_open(self) -> None: ...

    async def _run_stream(self, node: Node, name: str, *, parallelism: int, batch_size: int,
                          linger: float, on_error: str,
                          checkpoints: CheckpointRequest | None = None) -> Job: ...


@dataclass(frozen=True)
class CheckpointRequest:
    """What ``run()`` was asked about checkpoints (the bus opens the store)."""

    interval: float | None
    store: str | os.PathLike[str] | CheckpointStore | None
    resume: bool

Handler = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$")
_job_numbers = itertools.count(1)
_program = secrets.token_hex(3)  # unnamed jobs of programs sharing a cluster never collide


class CollectOp(StreamOp):
    """Keeps every value that reaches it (``collect()``); runs in the driver."""

    kind = "collect"

    def __init__(self, into: list[Any]) -> None:
        super().__init__()
        self.into = into

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        self.into.extend(batch.values)
        return batch


class Stream:
    """A lazy dataflow: chain operators, then ``run()`` it (or ``collect()`` a bounded one).

    Handlers may be sync or ``async def``. Every operator takes ``name=`` (shown in metrics and
    dead letters) and ``on_error=`` (``"dead-letter"``, ``"skip"`` or ``"fail"``) which
    overrides the stream's policy for that operator.
    """

    def __init__(self, bus: StreamOwner, node: Node) -> None:
        self._bus = bus
        self._node = node

    def __repr__(self) -> str:
        return f"<Stream ...{self._node.label}>"

    def _then(self, op: StreamOp, *, driver_only: bool = False) -> Stream:
        if self._bus.closed:
            self._bus._check_open()
        return Stream(self._bus, Node("op", (self._node,), op=op, driver_only=driver_only))

    def map(self, fn: Handler, *, name: str | None = None, on_error: str | None = None) -> Stream:
        """Each value replaced by ``fn(value)``."""
        return self._then(handler_op("map", fn, name=name, on_error=on_error))

    def flat_map(self, fn: Handler, *, name: str | None = None,
                 on_error: str | None = None) -> Stream:
        """Each value replaced by the values of the iterable ``fn(value)``."""
        return self._then(handler_op("flat_map", fn, name=name, on_error=on_error))

    def filter(self, fn: Handler, *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """Only the values for which ``fn(value)`` is true."""
        return self._then(handler_op("filter", fn, name=name, on_error=on_error))

    def key_by(self, fn: Handler, *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """Key each value by ``fn(value)``; keyed operators after it work per key."""
        return self._then(handler_op("key_by", fn, name=name, on_error=on_error))

    def reduce(self, fn: Callable[[Any, Any], Any], *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """Per key, the running ``fn(accumulated, value)``, emitted for every value."""
        return self._then(handler_op("reduce", fn, name=name, on_error=on_error))

    def with_timestamps(self, fn: Handler, *, name: str | None = None,
                        on_error: str | None = None) -> Stream:
        """Event time (ms since the epoch) of each value is ``fn(value)``."""
        return self._then(handler_op("with_timestamps", fn, name=name, on_error=on_error))

    def apply(self, operator: Operator, *, name: str | None = None,
              on_error: str | None = None) -> Stream:
        """Any object with ``process(batch: list[Event]) -> list[Event]`` (sync or async),
        plus ``snapshot()``/``restore(state)`` if it keeps state."""
        return self._then(ApplyOp(operator, name=name, on_error=on_error))

    def union(self, *others: Stream) -> Stream:
        """The values of this stream and ``others``, interleaved."""
        for other in others:
            if not isinstance(other, Stream) or other._bus is not self._bus:
                raise ConfigError("union() takes streams of the same bus", field="others")
        parents = (self._node, *(other._node for other in others))
        return Stream(self._bus, Node("union", parents))

    def window(self, spec: WindowSpec) -> WindowedStream:
        """Group values per key into ``er.Tumbling``, ``er.Sliding`` or ``er.Session`` windows."""
        return WindowedStream(self, spec)

    def set_parallelism(self, parallelism: int) -> Stream:
        """Run the last operator with ``parallelism`` instances (keyed ones split by key)."""
        if not isinstance(parallelism, int) or parallelism < 1:
            raise ConfigError(f"must be a positive int, got {parallelism!r}",
                              field="parallelism")
        self._node.parallelism = parallelism
        return self

    def sink(self, target: object, *, name: str | None = None,
             on_error: str | None = None) -> Stream:
        """Send every value to ``target``: a callable (sync or async, run in the driver), a
        topic, or a sink connector (instance or ``{"kind": ...}`` config). Values also pass on,
        so several sinks can follow each other."""
        if isinstance(target, Topic):
            return self._then(TopicSinkOp(target.name, name=name))
        if isinstance(target, (Mapping, Sink)):
            sink = registry.build(target, role="sink")
            return self._then(ConnectorSinkOp(sink, name=name, on_error=on_error))
        if callable(target):
            return self._then(CallableSinkOp(target, name=name or "sink", on_error=on_error),
                              driver_only=True)
        raise ConfigError(
            f"cannot sink to a {type(target).__name__}: expected a callable, a topic or a sink",
            field="sink",
        )

    async def run(
        self,
        name: str | None = None,
        *,
        parallelism: int = 1,
        batch_size: int | None = None,
        linger: float = 0.005,
        on_error: str = "dead-letter",
        checkpoint_interval: float | None = None,
        checkpoint_store: str | os.PathLike[str] | CheckpointStore | None = None,
        resume: bool = False,
    ) -> Job:
        """Start the stream and return its ``Job``.

        ``parallelism`` is the number of instances of keyed operators (and of what follows
        them); ``batch_size`` (default: the transport's) and ``linger`` (seconds) shape the
        micro-batches sources form; ``on_error`` is the policy for operators that do not set
        their own.

        Checkpoints: every ``checkpoint_interval`` seconds the job saves its state (source
        positions, reduce and window state, ``Operator`` snapshots) to ``checkpoint_store`` (a
        directory, default ``.eventray/checkpoints``, or an ``er.CheckpointStore``); a drain
        takes a final one. ``resume=True`` continues from the job's latest complete checkpoint
        if there is one. Any of the three turns checkpoints on.
        """
        job_name = name or f"stream-{next(_job_numbers)}-{_program}"
        if not _JOB_NAME.match(job_name):
            raise ConfigError(f"job names are letters, digits, _ and -, got {job_name!r}",
                              field="name")
        check_policy(on_error)
        batch_size = batch_size or self._bus.transport.batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive int, got {batch_size!r}", field="batch_size")
        if linger < 0:
            raise ConfigError(f"must not be negative, got {linger!r}", field="linger")
        checkpoints = None
        if checkpoint_interval is not None or checkpoint_store is not None or resume:
            checkpoints = _checkpoint_request(name, checkpoint_interval, checkpoint_store,
                                              resume)
        return await self._bus._run_stream(
            self._node, job_name, parallelism=parallelism, batch_size=batch_size,
            linger=linger, on_error=on_error, checkpoints=checkpoints,
        )

    async def collect(self, *, parallelism: int = 1, batch_size: int | None = None,
                      on_error: str = "dead-letter") -> list[Any]:
        """Run this bounded stream to its end and return every value that reached it
        (in order per key)."""
        unbounded = [n.label for n in _ancestors(self._node)
                     if n.reader is not None and not n.reader.bounded]
        if unbounded:
            raise ConfigError(f"collect() needs a bounded stream; {unbounded[0]} never ends "
                              "(run() it and stop() the job instead)", field="source")
        values: list[Any] = []
        terminal = self._then(CollectOp(values), driver_only=True)
        job = await terminal.run(parallelism=parallelism, batch_size=batch_size, linger=0,
                                 on_error=on_error)
        await job.wait()
        return values


def _checkpoint_request(name: str | None, interval: float | None,
                        store: str | os.PathLike[str] | CheckpointStore | None,
                        resume: bool) -> CheckpointRequest:
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, (int, float))
        or not math.isfinite(interval) or interval <= 0
    ):
        raise ConfigError(f"must be a positive number of seconds, got {interval!r}",
                          field="checkpoint_interval")
    if isinstance(store, str) and not store.strip():
        raise ConfigError("must name a directory (or leave it out for .eventray/checkpoints)",
                          field="checkpoint_store")
    if not isinstance(resume, bool):
        raise ConfigError(f"must be True or False, got {resume!r}", field="resume")
    if resume and name is None:
        raise ConfigError("resume needs the job's name: run(name=..., resume=True) finds "
                          "the checkpoints of the job with that name", field="resume")
    return CheckpointRequest(float(interval) if interval is not None else None, store, resume)


def _identity(value: Any) -> Any:
    return value


def _ancestors(node: Node) -> list[Node]:
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(current.parents)
    return out


class WindowedStream:
    """A keyed stream grouped into windows; pick an aggregation to get a ``Stream`` of
    ``er.WindowResult(key, start, end, value)``."""

    def __init__(self, stream: Stream, spec: WindowSpec) -> None:
        if not isinstance(spec, (Tumbling, Sliding, Session)):
            raise ConfigError(f"expected er.Tumbling, er.Sliding or er.Session, got {spec!r}",
                              field="window")
        self._stream = stream
        self._spec = spec

    def _with(self, aggregation: Aggregation, name: str | None, on_error: str | None) -> Stream:
        return self._stream._then(WindowOp(self._spec, aggregation, name=name,
                                           on_error=on_error))

    def count(self, *, name: str | None = None) -> Stream:
        """The number of values per key and window."""
        return self._with(COUNT, name, None)

    def sum(self, fn: Callable[[Any], Any] | None = None, *, name: str | None = None,
            on_error: str | None = None) -> Stream:
        """The sum of the values (or of ``fn(value)``) per key and window."""
        pick: Callable[[Any], Any] = fn if fn is not None else _identity
        return self._with(Aggregation("sum", int, lambda acc, v: acc + pick(v),
                                      merge=lambda a, b: a + b, increment=pick), name, on_error)

    def reduce(self, fn: Callable[[Any, Any], Any], *, name: str | None = None,
               on_error: str | None = None) -> Stream:
        """``fn(accumulated, value)`` folded over each window's values, per key."""
        return self._with(reducing(fn), name, on_error)

    def aggregate(
        self,
        initial: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        *,
        merge: Callable[[Any, Any], Any] | None = None,
        result: Callable[[Any], Any] | None = None,
        name: str | None = None,
        on_error: str | None = None,
    ) -> Stream:
        """A general fold: ``add(acc, value)`` from ``initial()``; ``merge`` joins two
        accumulators (needed by session windows); ``result(acc)`` is what is emitted."""
        return self._with(Aggregation("aggregate", initial, add, merge, result), name,
                          on_error)
