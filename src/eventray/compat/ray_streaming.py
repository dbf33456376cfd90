"""Ray Streaming on eventray: ``from eventray.compat.ray_streaming import StreamingContext``
in place of ``from ray.streaming import StreamingContext``, and the rest runs unchanged.

``ctx.submit(job_name)`` runs every pipeline that ends in a ``sink`` as an eventray job on the
Ray transport and, the sources here being bounded, returns once they ran to their end. Sink
functions are called in this process, with each record. Stages run as Ray actors named
``<job>.<stage>.<index>`` in the namespace ``eventray``. Java operators (``as_java_stream``,
class names as functions) do not exist here: they raise ``NotImplementedError``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import eventray as er

from ._ray import ray as _ray  # noqa: F401  (Ray Streaming programs need Ray; say so early)
from ._runner import Runner, runner

log = logging.getLogger("eventray.compat")

__all__ = ["DataStream", "DataStreamSink", "KeyDataStream", "StreamingContext"]

_JAVA = ("Java operators are not available on eventray (its stages run Python only); "
         "write the operator as a Python function")


def _function(func: object, method: str) -> Callable[..., Any]:
    """A Ray Streaming function argument as a callable: a function, or an object with the
    method of its kind (``MapFunction.map``...)."""
    if isinstance(func, str):
        raise NotImplementedError(f"{_JAVA} (got the Java class name {func!r})")
    if callable(func):
        return func
    bound = getattr(func, method, None)
    if callable(bound):
        return bound  # type: ignore[no-any-return]
    raise er.ConfigError(f"expected a function or an object with a {method}() method, "
                         f"got {func!r}", field=method)


class StreamingContext:
    """Where a Ray Streaming job is built (``from_values``, ``from_collection``,
    ``read_text_file``) and run (``submit``)."""

    class Builder:
        """``StreamingContext.Builder().option(key, value).build()``."""

        def __init__(self) -> None:
            self._options: dict[str, Any] = {}

        def option(self, key: str | None = None, value: Any = None,
                   conf: dict[str, Any] | None = None) -> StreamingContext.Builder:
            """Set a job option (kept in ``ctx.options``; eventray needs none of Ray
            Streaming's)."""
            if conf:
                self._options.update(conf)
            if key is not None:
                self._options[key] = value
            return self

        def build(self) -> StreamingContext:
            return StreamingContext(dict(self._options))

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self._runner: Runner = runner()
        self._runner.users += 1
        self._sinks: list[DataStreamSink] = []

    def _build(self, make: Callable[[er.Bus], er.Stream]) -> DataStream:
        bus = self._runner.bus

        async def build() -> er.Stream:
            return make(bus)

        return DataStream(self, self._runner.call(build(), "building a stream"))

    def from_values(self, *values: Any) -> DataStream:
        """A bounded stream of ``values``."""
        return self._build(lambda bus: bus.from_values(*values))

    def from_collection(self, values: Iterable[Any]) -> DataStream:
        """A bounded stream of the items of ``values``."""
        items = list(values)
        return self._build(lambda bus: bus.from_collection(items))

    def read_text_file(self, filename: str | os.PathLike[str]) -> DataStream:
        """A bounded stream of the lines of ``filename``."""
        return self._build(lambda bus: bus.read_text_file(filename))

    def submit(self, job_name: str) -> None:
        """Run every pipeline ending in a sink, as the job ``job_name``, to its end."""
        sinks, self._sinks = self._sinks, []
        if not sinks:
            raise er.ConfigError("the job has no sink: end a stream with .sink(func) before "
                                 "submit()", field="job_name")

        async def run_all() -> None:
            jobs: list[er.Job] = []
            try:
                for index, sink in enumerate(sinks):
                    name = job_name if index == 0 else f"{job_name}-{index + 1}"
                    jobs.append(await sink._stream.run(name))
                await asyncio.gather(*(job.wait() for job in jobs))
            except BaseException:
                for job in jobs:  # after a failure (or an interrupt) the others stop too
                    try:
                        await job.stop(drain=False)
                    except Exception as exc:
                        log.debug("stopping job after a failure: %s", exc)
                raise

        self._runner.call(run_all(), f"job {job_name!r}", timeout=None)


class DataStream:
    """A Ray Streaming ``DataStream``: operators return new streams; ``sink`` ends one."""

    def __init__(self, ctx: StreamingContext, stream: er.Stream) -> None:
        self._ctx = ctx
        self._stream = stream

    def _then(self, make: Callable[[er.Stream], er.Stream]) -> er.Stream:
        async def build() -> er.Stream:
            return make(self._stream)

        return self._ctx._runner.call(build(), "building a stream")

    def set_parallelism(self, parallelism: int) -> DataStream:
        """Run this operator (or split this source) with ``parallelism`` instances."""
        self._then(lambda s: s.set_parallelism(parallelism))
        return self

    def map(self, func: object) -> DataStream:
        fn = _function(func, "map")
        return DataStream(self._ctx, self._then(lambda s: s.map(fn)))

    def flat_map(self, func: object) -> DataStream:
        fn = _function(func, "flat_map")
        return DataStream(self._ctx, self._then(lambda s: s.flat_map(fn)))

    def filter(self, func: object) -> DataStream:
        fn = _function(func, "filter")
        return DataStream(self._ctx, self._then(lambda s: s.filter(fn)))

    def key_by(self, func: object) -> KeyDataStream:
        fn = _function(func, "key_by")
        return KeyDataStream(self._ctx, self._then(lambda s: s.key_by(fn)))

    def union(self, *streams: DataStream) -> DataStream:
        """The records of this stream and ``streams``, interleaved."""
        for other in streams:
            if not isinstance(other, DataStream) or other._ctx is not self._ctx:
                raise er.ConfigError("union() takes streams of the same StreamingContext",
                                     field="streams")
        others = [other._stream for other in streams]
        return DataStream(self._ctx, self._then(lambda s: s.union(*others)))

    def sink(self, func: object) -> DataStreamSink:
        """Call ``func`` with each record, in this process."""
        fn = _function(func, "sink")
        sink = DataStreamSink(self._ctx, self._then(lambda s: s.sink(fn)))
        self._ctx._sinks.append(sink)
        return sink

    def as_java_stream(self) -> DataStream:
        raise NotImplementedError(_JAVA)

    def as_python_stream(self) -> DataStream:
        raise NotImplementedError(_JAVA)


class KeyDataStream(DataStream):
    """A stream keyed by ``key_by``: ``reduce`` keeps a running value per key."""

    def reduce(self, func: object) -> DataStream:
        """Emit ``func(old, new)`` per key for every record (the first record as it is)."""
        fn = _function(func, "reduce")
        return DataStream(self._ctx, self._then(lambda s: s.reduce(fn)))


class DataStreamSink:
    """The end of a pipeline; ``ctx.submit`` runs it."""

    def __init__(self, ctx: StreamingContext, stream: er.Stream) -> None:
        self._ctx = ctx
        self._stream = stream

    def set_parallelism(self, parallelism: int) -> DataStreamSink:
        async def build() -> None:
            self._stream.set_parallelism(parallelism)

        self._ctx._runner.call(build(), "building a stream")
        return self
