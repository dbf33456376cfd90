"""How topic batches cross processes: small ones inline, large ones through the object store.

A large batch's values are ``ray.put`` once by the publisher; the topic actor forwards only
the reference (``ingest_batch`` receives the list straight from the object store, resolved by
Ray) and nothing in between copies or even reads the values.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from eventray.spi import Batch

STORE_FROM = 512  # records: batches this large travel through the object store


class Stored:
    """A batch whose values sit in the object store."""

    __slots__ = ("headers", "keys", "length", "ref", "ts")

    def __init__(self, ref: Any, length: int, keys: list[Any] | None, ts: list[int] | None,
                 headers: list[Any] | None) -> None:
        self.ref = ref
        self.length = length
        self.keys = keys
        self.ts = ts
        self.headers = headers

    def __len__(self) -> int:
        return self.length

    def __reduce__(self) -> tuple[Any, ...]:
        return (Stored, (self.ref, self.length, self.keys, self.ts, self.headers))


Wire = Batch | Stored


async def ship(batch: Batch) -> Wire:
    """``batch`` ready to send: inline if small, its values in the object store if not
    (``ray.put`` blocks while it copies, so it runs in a worker thread)."""
    if len(batch) < STORE_FROM:
        return batch
    ref = await asyncio.to_thread(ray.put, batch.values)
    return Stored(ref, len(batch), batch.keys, batch.ts, batch.headers)


async def land(item: Wire) -> Batch:
    """The batch itself, fetching its values from the object store if they are there."""
    if isinstance(item, Batch):
        return item
    values = await item.ref
    return Batch(values, item.keys, item.ts, item.headers)


def values_argument(item: Wire) -> Any:
    """What to pass a remote call that takes the list of values: Ray resolves a reference
    passed as an argument, so stored values go from the store to the callee directly."""
    return item.ref if isinstance(item, Stored) else item.values
