"""Windows: tumbling, sliding and session, in event time or processing time.

In event time the watermark is the largest timestamp seen minus the window's ``lateness``; a
window is emitted as ``WindowResult(key, start, end, value)`` once the watermark reaches its
end, a record whose windows have all been emitted is late (a dead letter), and whatever is
open is emitted when a bounded stream ends. In processing time, records are stamped on
arrival and windows close by the clock.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from eventray._model.batch import Batch
from eventray._model.errors import ConfigError
from eventray._model.event import now_ms
from eventray._runtime.operator import OpContext, StreamOp

TimeDomain = Literal["event", "processing"]


class WindowResult(NamedTuple):
    """One window's aggregate for one key; ``start``/``end`` in ms, end exclusive."""

    key: Any
    start: int
    end: int
    value: Any


def _ms(seconds: float, field: str, kind: str, *, allow_zero: bool = False) -> int:
    if not isinstance(seconds, (int, float)) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"must be a positive number of seconds, got {seconds!r}",
                          kind=kind, field=field)
    ms = round(seconds * 1000)
    if ms == 0 and not allow_zero:
        raise ConfigError(f"{seconds!r} seconds rounds to 0 ms; windows are measured in whole "
                          "milliseconds", kind=kind, field=field)
    return ms


def _check_time(time: str, kind: str) -> None:
    if time not in ("event", "processing"):
        raise ConfigError(f"must be 'event' or 'processing', got {time!r}", kind=kind,
                          field="time")


@dataclass(frozen=True)
class Tumbling:
    """Back-to-back windows of ``seconds``."""

    seconds: float
    lateness: float = 0.0
    time: TimeDomain = "event"

    def __post_init__(self) -> None:
        _ms(self.seconds, "seconds", "Tumbling")
        _ms(self.lateness, "lateness", "Tumbling", allow_zero=True)
        _check_time(self.time, "Tumbling")


@dataclass(frozen=True)
class Sliding:
    """Windows of ``seconds`` starting every ``every`` seconds (so they overlap)."""

    seconds: float
    every: float
    lateness: float = 0.0
    time: TimeDomain = "event"

    def __post_init__(self) -> None:
        size = _ms(self.seconds, "seconds", "Sliding")
        step = _ms(self.every, "every", "Sliding")
        if step > size or size % step:
            raise ConfigError("must divide the window size", kind="Sliding", field="every")
        _ms(self.lateness, "lateness", "Sliding", allow_zero=True)
        _check_time(self.time, "Sliding")


@dataclass(frozen=True)
class Session:
    """Per-key windows that stay open while records arrive less than ``gap`` seconds apart."""

    gap: float
    lateness: float = 0.0
    time: TimeDomain = "event"

    def __post_init__(self) -> None:
        _ms(self.gap, "gap", "Session")
        _ms(self.lateness, "lateness", "Session", allow_zero=True)
        _check_time(self.time, "Session")


WindowSpec = Tumbling | Sliding | Session
_NOTHING = object()


@dataclass(frozen=True)
class Aggregation:
    """How a window folds its records: ``add`` each value into an accumulator from
    ``initial()``, ``merge`` two accumulators (session windows), ``result`` at the end."""

    name: str
    initial: Callable[[], Any]
    add: Callable[[Any, Any], Any]
    merge: Callable[[Any, Any], Any] | None = None
    result: Callable[[Any], Any] | None = None
    increment: Callable[[Any], Any] | None = None  # count/sum: acc + increment(value)


COUNT = Aggregation("count", int, lambda acc, _: acc + 1, merge=lambda a, b: a + b,
                    increment=lambda _: 1)


def reducing(fn: Callable[[Any, Any], Any]) -> Aggregation:
    def add(acc: Any, value: Any) -> Any:
        return value if acc is _NOTHING else fn(acc, value)

    def merge(left: Any, right: Any) -> Any:
        if left is _NOTHING:
            return right
        return left if right is _NOTHING else fn(left, right)

    return Aggregation("reduce", lambda: _NOTHING, add, merge)


class WindowOp(StreamOp):
    """Keyed windows with one aggregation."""

    kind = "window"
    keyed = True
    stateful = True

    def __init__(self, spec: WindowSpec, aggregation: Aggregation, name: str | None = None,
                 on_error: str | None = None) -> None:
        if not isinstance(spec, (Tumbling, Sliding, Session)):
            raise ConfigError(f"expected er.Tumbling, er.Sliding or er.Session, got {spec!r}",
                              field="window")
        if isinstance(spec, Session) and aggregation.merge is None:
            raise ConfigError("session windows need aggregate(..., merge=...)", field="merge")
        super().__init__(name or f"window.{aggregation.name}", on_error)
        self.spec = spec
        self.agg = aggregation
        self.lateness = round(spec.lateness * 1000)
        self.processing = spec.time == "processing"
        if isinstance(spec, Session):
            self.size = self.step = round(spec.gap * 1000)
        else:
            self.size = round(spec.seconds * 1000)
            self.step = round(spec.every * 1000) if isinstance(spec, Sliding) else self.size
        self._reset()

    def _reset(self) -> None:
        self.watermark: int | None = None
        self.buckets: dict[int, dict[Any, Any]] = {}  # window start -> key -> accumulator
        self.starts: list[int] = []  # heap of open window starts
        self.sessions: dict[Any, list[list[Any]]] = {}  # key -> [[start, end, acc], ...]
        self.session_ends: list[tuple[int, int, Any]] = []  # heap of (end, tiebreak, key)
        self._tiebreak = 0

    def fresh(self) -> WindowOp:
        clone = copy.copy(self)
        clone._reset()
        return clone

    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        n = len(batch)
        if self.processing or batch.ts is None:
            now = now_ms()
            stamps = [now] * n
        else:
            stamps = batch.ts
        keys = batch.keys if batch.keys is not None else [None] * n
        if self.size == self.step and not isinstance(self.spec, Session):
            late, failures = self._add_tumbling(keys, batch.values, stamps)
        else:
            late, failures = self._add_each(keys, batch.values, stamps)
        if late or failures:
            await ctx.fail(self, batch, sorted(late + failures, key=lambda f: f[0]))
        return self._emit(self.watermark)

    def _add_each(
        self, keys: list[Any], values: list[Any], stamps: list[int]
    ) -> tuple[list[tuple[int, Exception]], list[tuple[int, Exception]]]:
        add_to = self._add_session if isinstance(self.spec, Session) else self._add_fixed
        late: list[tuple[int, Exception]] = []
        failures: list[tuple[int, Exception]] = []
        for index, (key, value, ts) in enumerate(zip(keys, values, stamps, strict=True)):
            watermark = self.watermark
            try:
                if not add_to(key, value, ts, watermark):
                    late.append((index, LateEvent(ts, watermark)))
                    continue
            except Exception as exc:
                failures.append((index, exc))
            mark = ts - self.lateness
            if watermark is None or mark > watermark:
                self.watermark = mark
        return late, failures

    def _add_tumbling(
        self, keys: list[Any], values: list[Any], stamps: list[int]
    ) -> tuple[list[tuple[int, Exception]], list[tuple[int, Exception]]]:
        """The hot path: one window per record, count and sum folded inline, the watermark
        advanced record by record (so lateness does not depend on how records were batched)."""
        size, lateness, buckets, starts = self.size, self.lateness, self.buckets, self.starts
        increment, add, initial = self.agg.increment, self.agg.add, self.agg.initial
        mark = self.watermark
        floor = -(2**63) if mark is None else mark - size
        late: list[tuple[int, Exception]] = []
        failures: list[tuple[int, Exception]] = []
        bucket: dict[Any, Any] = {}
        current = None
        for index, (key, value, ts) in enumerate(zip(keys, values, stamps, strict=True)):
            start = ts - ts % size
            if start <= floor:
                late.append((index, LateEvent(ts, mark)))
                continue
            if start != current:
                current = start
                found = buckets.get(start)
                if found is None:
                    found = buckets[start] = {}
                    heapq.heappush(starts, start)
                bucket = found
            try:
                if increment is not None:
                    bucket[key] = bucket.get(key, 0) + increment(value)
                else:
                    acc = bucket.get(key, _NOTHING)
                    bucket[key] = add(initial() if acc is _NOTHING else acc, value)
            except Exception as exc:
                failures.append((index, exc))
                continue
            if mark is None or ts - lateness > mark:
                mark = ts - lateness
                floor = mark - size
        self.watermark = mark
        return late, failures

    def _add_fixed(self, key: Any, value: Any, ts: int, watermark: int | None) -> bool:
        size, step = self.size, self.step
        last_start = ts - ts % step
        added = False
        start = last_start
        while start > ts - size:
            if watermark is None or start + size > watermark:
                bucket = self.buckets.get(start)
                if bucket is None:
                    bucket = self.buckets[start] = {}
                    heapq.heappush(self.starts, start)
                acc = bucket.get(key, _NOTHING)
                bucket[key] = self.agg.add(self.agg.initial() if acc is _NOTHING else acc, value)
                added = True
            start -= step
        return added

    def _add_session(self, key: Any, value: Any, ts: int, watermark: int | None) -> bool:
        gap = self.size
        if watermark is not None and ts + gap <= watermark:
            return False
        merge = self.agg.merge
        assert merge is not None
        session = [ts, ts + gap, self.agg.add(self.agg.initial(), value)]
        kept = []
        for other in self.sessions.get(key, []):
            if other[0] < session[1] and session[0] < other[1]:
                session = [min(session[0], other[0]), max(session[1], other[1]),
                           merge(other[2], session[2]) if other[0] <= session[0]
                           else merge(session[2], other[2])]
            else:
                kept.append(other)
        kept.append(session)
        kept.sort(key=lambda s: s[0])
        self.sessions[key] = kept
        self._tiebreak += 1
        heapq.heappush(self.session_ends, (session[1], self._tiebreak, key))
        return True

    def _emit(self, watermark: int | None, everything: bool = False) -> Batch:
        results: list[WindowResult] = []
        finish = self.agg.result
        if isinstance(self.spec, Session):
            ends = self.session_ends
            while ends and (everything or (watermark is not None and ends[0][0] <= watermark)):
                end, _, key = heapq.heappop(ends)
                open_sessions = self.sessions.get(key, [])
                for session in [s for s in open_sessions if s[1] == end]:
                    open_sessions.remove(session)
                    value = finish(session[2]) if finish else session[2]
                    results.append(WindowResult(key, session[0], session[1], value))
                if not open_sessions:
                    self.sessions.pop(key, None)
        else:
            starts, size = self.starts, self.size
            make = tuple.__new__
            while starts and (everything or (watermark is not None
                                             and starts[0] + size <= watermark)):
                start = heapq.heappop(starts)
                end = start + size
                items = self.buckets.pop(start).items()
                if finish is None:
                    results += [make(WindowResult, (k, start, end, a)) for k, a in items]
                else:
                    results += [make(WindowResult, (k, start, end, finish(a))) for k, a in items]
        if not results:
            return Batch([])
        return Batch(results, [r.key for r in results], [r.end - 1 for r in results])

    async def finish(self, ctx: OpContext) -> Batch | None:
        return self._emit(self.watermark, everything=True)

    def advance(self, now: int, ctx: OpContext) -> Batch | None:
        if not self.processing:
            return None
        self.watermark = now
        batch = self._emit(now)
        return batch if len(batch) else None

    def next_deadline(self) -> int | None:
        if not self.processing:
            return None
        if isinstance(self.spec, Session):
            return self.session_ends[0][0] if self.session_ends else None
        return self.starts[0] + self.size if self.starts else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "buckets": self.buckets,
            "sessions": self.sessions,
        }

    def restore(self, state: Any) -> None:
        self._reset()
        self.watermark = state["watermark"]
        self.buckets = state["buckets"]
        self.starts = list(self.buckets)
        heapq.heapify(self.starts)
        self.sessions = state["sessions"]
        for key, sessions in self.sessions.items():
            for session in sessions:
                self._tiebreak += 1
                heapq.heappush(self.session_ends, (session[1], self._tiebreak, key))


class LateEvent(Exception):
    """A record arrived after every window it belongs to was emitted."""

    def __init__(self, ts: int, watermark: int | None) -> None:
        super().__init__(f"event time {ts} is behind the watermark {watermark}")
        self.ts = ts
        self.watermark = watermark
