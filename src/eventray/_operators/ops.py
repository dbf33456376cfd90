"""Stream operators: each takes a ``Batch`` and returns the ``Batch`` it passes on.

Handlers may be sync or ``async def``; sync handlers run as one C-level loop per batch, async
ones are awaited one record at a time so order is kept. A record whose handler raises is
reported to the ``OpContext`` (dead letter, skip or fail, per the operator's policy) and the
rest of the batch goes on.
"""

from __future__ import annotations

import copy
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from eventray._model.batch import Batch, apply_each
from eventray._model.callables import is_async_callable
from eventray._model.errors import ConfigError, Rejected, RejectedEvents
from eventray._model.event import events_from
from eventray._model.protocols import Operator
from eventray._runtime.operator import OpContext, StreamOp


class _HandlerOp(StreamOp):
    def __init__(
        self, fn: Callable[..., Any], name: str | None = None, on_error: str | None = None
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"{self.kind} needs a callable, got {type(fn).__name__}",
                              field="fn")
        super().__init__(name, on_error)
        self.fn = fn
        self.is_async = is_async_callable(fn)

    async def _apply(self, batch: Batch, ctx: OpContext) -> tuple[list[Any], Batch]:
        """The handler's result per record, and the batch without the records that failed."""
        if not self.is_async:
            results, failures = apply_each(self.fn, batch.values)
        else:
            results, failures = [], []
            for index, value in enumerate(batch.values):
                try:
                    results.append(await self.fn(value))
                except Exception as exc:
                    failures.append((index, exc))
        if failures:
            await ctx.fail(self, batch, failures)
            batch = batch.without(index for index, _ in failures)
        return results, batch


class MapOp(_HandlerOp):
    kind = "map"

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        results, kept = await self._apply(batch, ctx)
        return kept.with_values(results)


class FilterOp(_HandlerOp):
    kind = "filter"

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        results, kept = await self._apply(batch, ctx)
        return kept.keep(results)


class KeyByOp(_HandlerOp):
    kind = "key_by"
    rekeys = True

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        results, kept = await self._apply(batch, ctx)
        try:
            deque(map(hash, results), maxlen=0)  # partitions and keyed state need hashable keys
        except TypeError:
            bad = [i for i, key in enumerate(results) if not _hashes(key)]
            await ctx.fail(self, kept, [(i, TypeError(
                f"key_by returned an unhashable key ({type(results[i]).__name__}); return a "
                "str, a number or a tuple")) for i in bad])
            failed = set(bad)
            results = [key for i, key in enumerate(results) if i not in failed]
            kept = kept.without(bad)
        return kept.with_keys(results)


def _hashes(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


class TimestampOp(_HandlerOp):
    kind = "with_timestamps"

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        results, kept = await self._apply(batch, ctx)
        return kept.with_ts([int(t) for t in results])


class FlatMapOp(_HandlerOp):
    kind = "flat_map"

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        results, kept = await self._apply(batch, ctx)
        values: list[Any] = []
        counts: list[int] = []
        for result in results:
            before = len(values)
            values.extend(cast(Iterable[Any], result))
            counts.append(len(values) - before)
        return Batch(values, _repeat(kept.keys, counts), _repeat(kept.ts, counts),
                     _repeat(kept.headers, counts))


def _repeat(column: list[Any] | None, counts: list[int]) -> list[Any] | None:
    if column is None:
        return None
    return [item for item, count in zip(column, counts, strict=True) for _ in range(count)]


_MISSING = object()


class ReduceOp(_HandlerOp):
    """Keyed running reduce: emits the new accumulated value for every record."""

    kind = "reduce"
    keyed = True
    stateful = True

    def __init__(
        self, fn: Callable[[Any, Any], Any], name: str | None = None, on_error: str | None = None
    ) -> None:
        super().__init__(fn, name, on_error)
        self.state: dict[Any, Any] = {}

    def fresh(self) -> ReduceOp:
        clone = copy.copy(self)
        clone.state = {}
        return clone

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        state, fn = self.state, self.fn
        keys = batch.keys if batch.keys is not None else [None] * len(batch)
        out: list[Any] = []
        failures: list[tuple[int, Exception]] = []
        for index, (key, value) in enumerate(zip(keys, batch.values, strict=True)):
            previous = state.get(key, _MISSING)
            try:
                if previous is _MISSING:
                    current = value
                else:
                    current = fn(previous, value)
                    if self.is_async:
                        current = await current
            except Exception as exc:
                failures.append((index, exc))
                continue
            state[key] = current
            out.append(current)
        if failures:
            await ctx.fail(self, batch, failures)
            batch = batch.without(index for index, _ in failures)
        return batch.with_values(out)

    def snapshot(self) -> dict[Any, Any]:
        return dict(self.state)

    def restore(self, state: Any) -> None:
        self.state = dict(state)


class ApplyOp(StreamOp):
    """Any object following the ``Operator`` protocol; a raising batch fails as a whole."""

    kind = "apply"

    def __init__(self, operator: Operator, name: str | None = None,
                 on_error: str | None = None) -> None:
        if not isinstance(operator, Operator):
            raise ConfigError(
                f"apply() needs an object with a process(batch) method, got "
                f"{type(operator).__name__}",
                field="operator",
            )
        super().__init__(name or type(operator).__name__, on_error)
        self.operator = operator
        self.stateful = hasattr(operator, "snapshot")

    def fresh(self) -> ApplyOp:
        clone = copy.copy(self)
        clone.operator = copy.deepcopy(self.operator)
        return clone

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        try:
            result = self.operator.process(batch.to_events())
            if inspect.isawaitable(result):
                result = await result
            return Batch.from_events(events_from(result, self.name))
        except Exception as exc:
            await ctx.fail(self, batch, [(i, exc) for i in range(len(batch))])
            return Batch([])

    def snapshot(self) -> Any:
        take = getattr(self.operator, "snapshot", None)
        return take() if take else None

    def restore(self, state: Any) -> None:
        put = getattr(self.operator, "restore", None)
        if put:
            put(state)


class CallableSinkOp(_HandlerOp):
    """``sink(fn)``: calls ``fn(value)`` per record; passes the batch on unchanged."""

    kind = "sink"

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        await self._apply(batch, ctx)
        return batch


class TopicSinkOp(StreamOp):
    """``sink(topic)``: publishes every record (key and time kept) to a bus topic."""

    kind = "sink"

    def __init__(self, topic_name: str, name: str | None = None) -> None:
        super().__init__(name or f"sink:{topic_name}")
        self.topic_name = topic_name

    def topics(self) -> tuple[str, ...]:
        return (self.topic_name,)

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        await ctx.publish(self.topic_name, batch.to_events())
        return batch


class _SharedSink:
    """One sink used by every instance of a stage in this process: started by the first,
    stopped by the last."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.users = 0

    async def acquire(self) -> None:
        self.users += 1
        if self.users == 1:
            await self.sink.start()

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            await self.sink.stop()

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedSink:
        return _SharedSink(copy.deepcopy(self.sink, memo))


class ConnectorSinkOp(StreamOp):
    """``sink(connector)``: writes every batch to a ``Sink``, started and stopped with it."""

    kind = "sink"

    def __init__(self, sink: Any, name: str | None = None, on_error: str | None = None) -> None:
        super().__init__(name or f"sink:{getattr(sink, 'kind', type(sink).__name__)}", on_error)
        self.shared = _SharedSink(sink)
        self.started = False

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        if not self.started:
            await self.shared.acquire()
            self.started = True
        try:
            await self.shared.sink.write(batch.to_events())
        except RejectedEvents as rejected:
            await ctx.fail(self, batch, [(i, Rejected(text)) for i, text in rejected.failures])
        except Exception as exc:
            await ctx.fail(self, batch, [(i, exc) for i in range(len(batch))])
        return batch

    async def finish(self, ctx: OpContext) -> Batch | None:
        if self.started:
            await self.shared.sink.flush()
        return None

    async def prepare_checkpoint(self, ctx: OpContext) -> None:
        if self.started:
            await self.shared.sink.flush()

    async def close(self) -> None:
        if self.started:
            self.started = False
            await self.shared.release()


def handler_op(kind: str, fn: Callable[..., Any] | Awaitable[Any], **kwargs: Any) -> StreamOp:
    """The operator class for ``kind`` built around ``fn``."""
    classes: dict[str, type[_HandlerOp]] = {
        "map": MapOp, "flat_map": FlatMapOp, "filter": FilterOp, "key_by": KeyByOp,
        "with_timestamps": TimestampOp, "reduce": ReduceOp,
    }
    return classes[kind](cast(Callable[..., Any], fn), **kwargs)
