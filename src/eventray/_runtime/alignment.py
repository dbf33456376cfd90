"""The inbox of a stage instance, which aligns checkpoint barriers.

Every upstream instance puts into one bounded channel. Once a sender's ``Barrier`` is in the
channel, that sender waits to put more until the stage has taken its checkpoint and calls
``release``: what the stage holds at the checkpoint is then exactly what every sender sent
before its barrier (Chandy-Lamport alignment, as in Flink). A waiting sender is backpressure,
not a buffer, so the inbox stays bounded while it aligns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from eventray._model.batch import Batch

from .channel import BatchChannel
from .context import Barrier


class AligningInbox:
    """Batches and control messages from several senders, in the order each sent them.
    A control message is put alone (``[End]``, ``[Barrier]``)."""

    def __init__(self, capacity: int) -> None:
        self.channel: BatchChannel[Any] = BatchChannel(capacity)
        self._held: set[str] = set()  # senders whose barrier is in, until release()
        self._released = asyncio.Event()
        self._taken = 0  # the last checkpoint taken: its barriers, sent again, are dropped

    async def wait_released(self, sender: str) -> None:
        """Until ``sender`` may put again (its barrier's checkpoint was taken)."""
        while sender in self._held:
            await self._released.wait()

    async def put(self, sender: str, items: Sequence[Any]) -> None:
        """Add ``items`` from ``sender``: batches wait for room, control messages never do;
        after a barrier the sender waits for ``release``."""
        await self.wait_released(sender)
        first = items[0]
        if type(first) is Batch:
            await self.channel.put(items)
            return
        if type(first) is Barrier:
            if first.id <= self._taken:  # a restored sender sends it again
                return
            self._held.add(sender)
        self.channel.put_nowait(items, force=True)

    def release(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is taken: senders waiting after their barrier go on."""
        self._taken = max(self._taken, checkpoint_id)
        if self._held:
            self._held.clear()
            self._released.set()
            self._released = asyncio.Event()

    async def get(self, max_items: int) -> list[Any] | None:
        return await self.channel.get(max_items)

    def task_done(self, count: int) -> None:
        self.channel.task_done(count)

    def close(self) -> None:
        self.channel.close()
