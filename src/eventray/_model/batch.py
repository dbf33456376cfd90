"""Column batches: how records travel inside a stream and between processes.

A stream stage moves a ``Batch`` of parallel columns (values, and keys, event times and
headers once known) instead of one ``Event`` object per record: an operator is one C-level
loop over a column, which is what lets a Python stage keep up with a plain loop, and a batch
pickles about ten times faster than the same events as objects, which is why transports send
batches over the wire. ``Event`` lists appear only at the edges (connectors, subscribers,
custom ``Operator``s).
"""

from __future__ import annotations

import dataclasses
import datetime
import numbers
import pickle
import zlib
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any

from .event import Event, now_ms

Headers = dict[str, str] | None


class Batch:
    """Records as columns: ``values``; ``keys`` after ``key_by``; ``ts`` once known;
    ``headers`` when some record has them. A column that would be all None is None."""

    __slots__ = ("headers", "keys", "ts", "values")

    def __init__(
        self,
        values: list[Any],
        keys: list[Any] | None = None,
        ts: list[int] | None = None,
        headers: list[Headers] | None = None,
    ) -> None:
        self.values = values
        self.keys = keys
        self.ts = ts
        self.headers = headers

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Batch({len(self.values)} records, keys={self.keys is not None})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Batch, (self.values, self.keys, self.ts, self.headers))

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> Batch:
        values = [event.value for event in events]
        keys = [event.key for event in events]
        ts = [event.ts for event in events]
        headers = [event.headers for event in events]
        return cls(
            values,
            keys if any(k is not None for k in keys) else None,
            ts,
            headers if any(h is not None for h in headers) else None,
        )

    def to_events(self) -> list[Event]:
        n = len(self.values)
        keys = self.keys or [None] * n
        ts = self.ts or [now_ms()] * n
        headers = self.headers or [None] * n
        return [Event(v, k, t, h) for v, k, t, h in zip(self.values, keys, ts, headers,
                                                        strict=True)]

    def with_values(self, values: list[Any]) -> Batch:
        """The same records (keys, times, headers) with new values, one per record."""
        return Batch(values, self.keys, self.ts, self.headers)

    def with_keys(self, keys: list[Any]) -> Batch:
        return Batch(self.values, keys, self.ts, self.headers)

    def with_ts(self, ts: list[int]) -> Batch:
        return Batch(self.values, self.keys, ts, self.headers)

    def keep(self, mask: Sequence[bool]) -> Batch:
        """The records whose ``mask`` entry is true, in order."""
        return Batch(
            list(compress(self.values, mask)),
            list(compress(self.keys, mask)) if self.keys is not None else None,
            list(compress(self.ts, mask)) if self.ts is not None else None,
            list(compress(self.headers, mask)) if self.headers is not None else None,
        )

    def without(self, failed: Iterable[int]) -> Batch:
        """This batch minus the records at the ``failed`` indices."""
        mask = [True] * len(self.values)
        for index in failed:
            mask[index] = False
        return self.keep(mask)

    def key_at(self, index: int) -> Any:
        return self.keys[index] if self.keys is not None else None

    def ts_at(self, index: int) -> int | None:
        return self.ts[index] if self.ts is not None else None


def concat(batches: Sequence[Batch]) -> Batch:
    """One batch holding ``batches`` in order."""
    if len(batches) == 1:
        return batches[0]
    values = [v for b in batches for v in b.values]
    has_keys = any(b.keys is not None for b in batches)
    has_ts = any(b.ts is not None for b in batches)
    has_headers = any(b.headers is not None for b in batches)
    keys = [k for b in batches for k in (b.keys or [None] * len(b))] if has_keys else None
    now = now_ms()
    ts = [t for b in batches for t in (b.ts or [now] * len(b))] if has_ts else None
    headers = ([h for b in batches for h in (b.headers or [None] * len(b))]
               if has_headers else None)
    return Batch(values, keys, ts, headers)


def apply_each(
    fn: Callable[[Any], Any], values: list[Any]
) -> tuple[list[Any], list[tuple[int, Exception]]]:
    """``[fn(v) for v in values]`` at C speed, collecting (index, error) for calls that raise.

    The results list holds only the successful calls, in order.
    """
    out: list[Any] = []
    failures: list[tuple[int, Exception]] = []
    start = 0
    total = len(values)
    while start < total:
        before = len(out)
        try:
            out.extend(map(fn, values[start:] if start else values))
            break
        except Exception as exc:  # the call at the first index not yet in `out` raised
            index = start + len(out) - before
            failures.append((index, exc))
            start = index + 1
    return out, failures


def stable_hash(key: Any) -> int:
    """A non-negative hash that is the same in every process (``hash()`` of str, bytes and
    the order of sets are salted per process, ``PYTHONHASHSEED``) and agrees with ``==``
    (``1``, ``1.0`` and ``True`` hash alike) for str, bytes, numbers, dates and times,
    dataclass instances and tuples and frozensets of those. Other keys hash by their pickle,
    so equal keys that pickle differently may land in different partitions: key by one of
    the types above."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, (bytes, bytearray, memoryview)):
        return zlib.crc32(key)
    if isinstance(key, numbers.Number):
        return _number_hash(key)
    if isinstance(key, tuple):
        result = 0x345678
        for item in key:
            result = ((result * 1000003) ^ stable_hash(item)) & 0xFFFFFFFFFFFF
        return result & _MASK
    if isinstance(key, frozenset):  # equal sets may iterate in different orders
        return (sum(stable_hash(item) for item in key) ^ 0x5E7) & _MASK
    if isinstance(key, datetime.datetime) and key.tzinfo is not None:
        return _number_hash(key.timestamp())  # equal moments in other time zones are equal
    if isinstance(key, (datetime.date, datetime.time)):  # naive ones equal field by field
        return zlib.crc32(key.isoformat().encode())
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        fields = tuple(getattr(key, f.name) for f in dataclasses.fields(key) if f.compare)
        return stable_hash((type(key).__qualname__, fields))
    return zlib.crc32(pickle.dumps(key, protocol=5))


_MASK = 0x7FFFFFFF


def _number_hash(key: Any) -> int:
    if isinstance(key, complex):
        return _number_hash(key.real) if key.imag == 0 else hash(key) & _MASK
    if key != key:  # NaN: hash() of NaN is per object; NaN equals nothing anyway
        return 0
    try:
        integral = int(key)
    except (TypeError, ValueError, OverflowError):  # infinities, numbers int() refuses
        return hash(key) & _MASK
    if integral == key:
        return integral & _MASK
    # hash() of numbers is not salted and agrees across int, float, Fraction and Decimal
    return hash(key) & _MASK


def split_by_key(batch: Batch, parts: int) -> list[Batch]:
    """``batch`` cut into ``parts`` batches by the stable hash of each record's key."""
    keys = batch.keys if batch.keys is not None else [None] * len(batch)
    if parts == 1:
        return [batch]
    cache: dict[Any, int] = {}
    targets = []
    for key in keys:
        target = cache.get(key)
        if target is None:
            target = cache[key] = stable_hash(key) % parts
        targets.append(target)
    out = []
    for part in range(parts):
        mask = [t == part for t in targets]
        out.append(batch.keep(mask))
    return out
