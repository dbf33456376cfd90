"""A bounded channel that moves items in batches: the unit of every hop.

``put`` waits while the channel holds ``capacity`` items or more (a batch may overshoot by its
own size, so the bound is ``capacity + largest batch``). ``get`` returns up to ``max_items`` at
once. ``task_done``/``join`` count items the consumer has finished, which is how ``flush``
knows that everything put so far was processed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from eventray._model.errors import ClosedError

T = TypeVar("T")


class BatchChannel(Generic[T]):
    """Bounded multi-producer, multi-consumer channel of batches."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.put_total = 0
        self.done_total = 0
        self._chunks: deque[Sequence[T]] = deque()
        self._offset = 0  # items of _chunks[0] already taken
        self._tail: list[T] | None = None  # last chunk, when it is ours to append to
        self._size = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._joiners: list[tuple[int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, batch: Sequence[T], *, force: bool = False) -> bool:
        """Add ``batch`` if there is room (or ``force``); return whether it was added."""
        if self._closed:
            raise ClosedError("channel is closed")
        if not force and self._size >= self.capacity:
            return False
        if batch:
            self._tail = None
            self._chunks.append(batch)
            self._size += len(batch)
            self.put_total += len(batch)
            if self._getters:
                _wake_one(self._getters)
        return True

    def put_one_nowait(self, item: T) -> bool:
        """Add one item if there is room; return whether it was added."""
        if self._size >= self.capacity or self._closed:
            if self._closed:
                raise ClosedError("channel is closed")
            return False
        if self._tail is None:
            self._tail = [item]
            self._chunks.append(self._tail)
        else:
            self._tail.append(item)
        self._size += 1
        self.put_total += 1
        if self._getters:
            _wake_one(self._getters)
        return True

    async def wait_for_room(self) -> None:
        """Wait until a ``put`` may find room (or ``wake_putters`` is called)."""
        if self._size >= self.capacity and not self._closed:
            await _wait(self._putters)

    def wake_putters(self) -> None:
        """Wake everyone waiting for room, so they can look at why they wait."""
        _wake_all(self._putters)

    async def put(self, batch: Sequence[T]) -> None:
        """Add ``batch``, first waiting while the channel is full."""
        while not self.put_nowait(batch):
            await _wait(self._putters)

    async def get(self, max_items: int) -> list[T] | None:
        """Up to ``max_items`` items, waiting for at least one; None once closed and empty.

        The list may be shared with other consumers of the same batch: treat it as read-only.
        """
        while not self._size:
            if self._closed:
                return None
            await _wait(self._getters)
        first = self._chunks[0]
        if self._offset == 0 and (
            len(first) == max_items or (len(first) < max_items and len(self._chunks) == 1)
        ):
            self._chunks.popleft()
            if first is self._tail:
                self._tail = None
            items = first if isinstance(first, list) else list(first)
        else:
            items = []
            while self._chunks and len(items) < max_items:
                chunk = self._chunks[0]
                end = min(len(chunk), self._offset + max_items - len(items))
                items.extend(chunk[self._offset : end])
                if end == len(chunk):
                    self._chunks.popleft()
                    if chunk is self._tail:
                        self._tail = None
                    self._offset = 0
                else:
                    self._offset = end
        self._size -= len(items)
        if self._size < self.capacity:
            _wake_all(self._putters)
        if self._size:
            _wake_one(self._getters)
        return items

    def take_all(self) -> list[T]:
        """Everything queued, without waiting (possibly nothing)."""
        items: list[T] = []
        self._tail = None
        while self._size:
            chunk = self._chunks.popleft()
            items.extend(chunk[self._offset :])
            self._size -= len(chunk) - self._offset
            self._offset = 0
        _wake_all(self._putters)
        return items

    def task_done(self, count: int) -> None:
        """Record that ``count`` items taken with ``get`` were fully processed."""
        self.done_total += count
        if self._joiners:
            waiting = []
            for target, future in self._joiners:
                if self.done_total >= target:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((target, future))
            self._joiners = waiting

    async def join(self, target: int | None = None) -> None:
        """Wait until ``target`` items (default: all put so far) were marked done."""
        goal = self.put_total if target is None else target
        if self.done_total >= goal:
            return
        future = asyncio.get_running_loop().create_future()
        self._joiners.append((goal, future))
        await future

    def close(self) -> None:
        """Refuse further puts; consumers drain what is left, then get None."""
        self._closed = True
        _wake_all(self._getters)
        _wake_all(self._putters)

    def abandon(self) -> None:
        """Close and drop whatever is left, releasing anyone waiting to join."""
        self.close()
        self._tail = None
        self._chunks.clear()
        self._offset = 0
        self._size = 0
        self.task_done(self.put_total - self.done_total)


async def _wait(waiters: deque[asyncio.Future[None]]) -> None:
    future = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    except asyncio.CancelledError:
        # Pass a wake-up we were given but cannot use to the next waiter.
        if future.done() and not future.cancelled():
            _wake_one(waiters)
        raise
    finally:
        if not future.done():
            future.cancel()
        try:
            waiters.remove(future)
        except ValueError:
            pass


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    for future in waiters:
        if not future.done():
            future.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    for future in waiters:
        if not future.done():
            future.set_result(None)
