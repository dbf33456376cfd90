"""The channels between stage actors, and what failover needs of them.

A push from one stage instance to another carries a header: the sender's epoch (how many times
it was restored), the sequence number its epoch started at, the push's sequence number, and
the channel offset (the records the sender put on this channel before, over the whole job).
The receiver admits each sender's pushes in sequence order (async actors run calls in any
order) and drops what it already has: a restored sender sends again what it sent since its
checkpoint (dropped by offset, so batch boundaries may differ), and a restored receiver is
sent again everything since its checkpoint from its senders' replay buffers.

The sender keeps what it pushed since the last complete checkpoint in a bounded replay buffer:
when it is half full the sender asks for a checkpoint, and when it is full the sender waits
(backpressure). A push that fails because the receiving actor died is not an error while
checkpoints are on: the buffer has it, and ``replay`` sends it again once the job restored
the receiver.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any

from ray.exceptions import RayActorError

from eventray.spi import Barrier, Batch, End

log = logging.getLogger("eventray")

Header = tuple[int, int, int, int]  # epoch, epoch's first seq, seq, offset


@dataclass
class SenderState:
    """What a receiver knows of one sender."""

    epoch: int = 0
    next_seq: int = 0
    admitted: int = 0  # records taken from this sender, over the whole job
    last_barrier: int = 0
    ended: bool = False


class ChannelsIn:
    """The receiving end of every channel into one stage instance."""

    def __init__(self) -> None:
        self._senders: dict[str, SenderState] = {}
        self._parked: dict[tuple[str, int, int], asyncio.Future[bool]] = {}

    async def admit(self, sender: str, header: Header) -> SenderState | None:
        """Wait for the turn of this push; None if it belongs to an epoch that is over."""
        epoch, start, seq, _ = header
        state = self._senders.get(sender)
        if state is None:
            state = self._senders[sender] = SenderState(epoch, start)
        if epoch > state.epoch:  # the sender was restored: it numbers its pushes anew
            state.epoch, state.next_seq = epoch, start
            for key in [k for k in self._parked if k[0] == sender and k[1] < epoch]:
                self._parked.pop(key).set_result(False)
        if epoch < state.epoch or seq < state.next_seq:
            return None
        if seq > state.next_seq:
            if (sender, epoch, seq) in self._parked:  # sent again while the first waits
                return None
            parked = asyncio.get_running_loop().create_future()
            self._parked[(sender, epoch, seq)] = parked
            if not await parked:
                return None
            state = self._senders[sender]
        return state

    def done(self, sender: str, header: Header) -> None:
        """Let the sender's next push in."""
        epoch, _, seq, _ = header
        state = self._senders[sender]
        if state.epoch != epoch:
            return
        state.next_seq = seq + 1
        waiting = self._parked.pop((sender, epoch, seq + 1), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(True)

    @staticmethod
    def unseen(state: SenderState, header: Header, items: list[Any]) -> tuple[list[Any], int]:
        """What of ``items`` the receiver does not have yet (possibly nothing), and the
        sender's records taken once it is in: the caller sets ``state.admitted`` to that
        after the inbox took it (a checkpoint meanwhile must not count it)."""
        first = items[0]
        if type(first) is Barrier:
            if first.id <= state.last_barrier:
                return [], state.admitted
            state.last_barrier = first.id
            return items, state.admitted
        if type(first) is End:
            if state.ended:
                return [], state.admitted
            state.ended = True
            return items, state.admitted
        offset = header[3]
        size = sum(len(batch) for batch in items)
        skip = state.admitted - offset
        if skip < 0:
            log.error("a channel skipped %d records (offset %d, had %d)", -skip, offset,
                      state.admitted)
            skip = 0
        admitted = max(state.admitted, offset + size)
        if skip == 0:
            return items, admitted
        if skip >= size:
            return [], admitted
        kept = []
        for batch in items:
            if skip >= len(batch):
                skip -= len(batch)
                continue
            kept.append(batch.keep([i >= skip for i in range(len(batch))]) if skip else batch)
            skip = 0
        return kept, admitted

    def snapshot(self) -> dict[str, tuple[int, ...]]:
        return {sender: astuple(state) for sender, state in self._senders.items()}

    def restore(self, saved: dict[str, tuple[int, ...]]) -> None:
        self._senders = {sender: SenderState(*values)  # type: ignore[arg-type]
                         for sender, values in saved.items()}


class Receiver(ABC):
    """Where one stage instance sends to one instance of the next stage, in order."""

    name = ""  # the receiving actor's name, if it is an actor

    @abstractmethod
    async def send(self, items: list[Any]) -> None:
        """Hand over ``items`` (batches and control messages), waiting for room."""

    async def settle(self) -> None:
        """Wait until everything sent was received."""

    async def replay(self) -> None:
        """The receiver was restored: send again what it may not have."""

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable."""

    @property
    def buffered(self) -> int:
        """Batches kept for replay."""
        return 0

    def snapshot(self) -> Any:
        return None

    def restore(self, saved: Any) -> None:
        """Resume from a ``snapshot``."""


class ActorReceiver(Receiver):
    """Pushes to one stage actor, at most ``credits`` pushes in flight, each with its header;
    keeps what it pushed since the last complete checkpoint when ``replay_batches`` is set."""

    def __init__(self, handle: Any, name: str, sender: str, credits: int, *, epoch: int = 0,
                 replay_batches: int | None = None,
                 hurry: Callable[[], None] | None = None) -> None:
        self.handle = handle
        self.name = name
        self.sender = sender
        self.credits = credits
        self.epoch = epoch
        self.start = 0
        self.seq = 0
        self.offset = 0
        self.capacity = replay_batches
        self._hurry = hurry
        self._buffer: deque[tuple[Header, list[Any]]] = deque()
        self._barriers: dict[int, int] = {}  # checkpoint id -> seq of its barrier
        self._in_flight: deque[tuple[Any, int]] = deque()  # (call, generation)
        self._generation = 0  # replays so far: a failed call of an older one is replayed
        self._down = False  # the receiver died: pushes wait in the buffer for replay
        self._replaying = False  # replay() sends the buffer, what is sent meanwhile too
        self._changed = asyncio.Event()  # the buffer was trimmed, or replay began

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def send(self, items: list[Any]) -> None:
        first = items[0]
        size = 0
        if type(first) is Batch:
            size = sum(len(batch) for batch in items)
            await self._room()
        header = (self.epoch, self.start, self.seq, self.offset)
        self.seq += 1
        self.offset += size
        if self.capacity is not None:
            self._buffer.append((header, items))
            if type(first) is Barrier:
                self._barriers[first.id] = header[2]
            if self._replaying:  # the replay sends it, after what came before it
                return
        await self._push(header, items)

    async def _room(self) -> None:
        """Backpressure from a full replay buffer (after asking for a checkpoint)."""
        if self.capacity is None:
            return
        if len(self._buffer) >= self.capacity // 2 and self._hurry is not None:
            self._hurry()
        while len(self._buffer) >= self.capacity:
            self._changed.clear()
            await self._changed.wait()

    async def _push(self, header: Header, items: list[Any], *, replay: bool = False) -> None:
        while len(self._in_flight) >= self.credits:
            await self._settle_one()
        if self._replaying and not replay:
            return  # a replay began while this waited: it sends this too, in order
        if not self._down:
            call = self.handle.push.remote(self.sender, header, items)
            self._in_flight.append((call, self._generation))

    async def _settle_one(self) -> None:
        call, generation = self._in_flight.popleft()
        try:
            await call
        except RayActorError:
            if self.capacity is None:
                raise
            if generation == self._generation:  # else a replay since has sent it again
                self._down = True  # the buffer holds it; replay() sends it again
                self._in_flight.clear()

    async def settle(self) -> None:
        """Wait until everything sent was received (a receiver that died: until replayed)."""
        while self._in_flight or self._down:
            if self._down:
                self._changed.clear()
                await self._changed.wait()
            else:
                await self._settle_one()

    async def replay(self) -> None:
        """The receiver was restored: send what the buffer holds again, and what is sent
        meanwhile after it, in order (live sends wait in the buffer until it is done)."""
        self._down = False
        self._generation += 1
        self._in_flight.clear()
        self._changed.set()
        self._replaying = True
        try:
            cursor = self._buffer[0][0][2] if self._buffer else self.seq
            while self._buffer and cursor <= self._buffer[-1][0][2]:
                index = max(0, cursor - self._buffer[0][0][2])  # seqs in the buffer are
                header, items = self._buffer[index]  # consecutive; trims only drop the head
                cursor = header[2] + 1
                await self._push(header, items, replay=True)
        finally:
            self._replaying = False

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Forget what was sent before the barrier of a complete checkpoint."""
        seq = self._barriers.get(checkpoint_id)
        for done in [i for i in self._barriers if i <= checkpoint_id]:
            del self._barriers[done]
        if seq is None:
            return
        while self._buffer and self._buffer[0][0][2] <= seq:
            self._buffer.popleft()
        self._changed.set()

    def snapshot(self) -> tuple[int, int]:
        return (self.seq, self.offset)

    def restore(self, saved: Any) -> None:
        self.start = self.seq = saved[0]
        self.offset = saved[1]
