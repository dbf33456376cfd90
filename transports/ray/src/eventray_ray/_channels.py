"""The channels between stage actors, and what failover needs of them.

A push from one stage instance to another carries a header: the sender's epoch (how many times
it was restored) and the sequence number that epoch started at, the push's sequence number,
the channel offset (the records the sender put on this channel before, over the whole job),
the channel's replay generation, and, for a push sent again, the place the receiver gave it.
The receiver admits each sender's pushes in sequence order (async actors run calls in any
order) and drops what it already has: a restored sender sends again what it sent since its
checkpoint (dropped by offset, so batch boundaries may differ).

The sender keeps what it pushed since the last complete checkpoint in a bounded replay buffer:
when it is half full the sender asks for a checkpoint, and when it is full the sender waits
(backpressure). A push that fails because the receiving actor died is not an error while
checkpoints are on: the buffer has it. To restore a receiver, the job first has every sender
start a new replay generation (``prepare_replay``: pushes of the old one are dropped, new ones
wait in the buffer), opens the receiver with the places its pushes had been given (each push
returns its place in the receiver's input), then has the senders send their buffers again
(``replay``). The restored receiver takes the pushes it had before in the order it had them,
so it computes the same output again, however its inputs interleaved, and what follows it
can drop what it already has by offset.
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

ROOM_POLL = 0.05  # seconds between looks at whether a full replay buffer may overflow

# epoch, the epoch's first seq, seq, offset, replay generation, place (-1: not sent before)
Header = tuple[int, int, int, int, int, int]


@dataclass
class SenderState:
    """What a receiver knows of one sender."""

    epoch: int = 0
    next_seq: int = 0
    admitted: int = 0  # records taken from this sender, over the whole job
    last_barrier: int = 0
    ended: bool = False
    generation: int = 0  # pushes of older replay generations are dropped


class ChannelsIn:
    """The receiving end of every channel into one stage instance."""

    def __init__(self) -> None:
        self._senders: dict[str, SenderState] = {}
        self._parked: dict[tuple[str, int, int], asyncio.Future[bool]] = {}
        self.taken = 0  # pushes the inbox took: the place the next one gets
        self._replayed: deque[int] = deque()  # places of pushes to take again, in order
        self._expected_from: dict[int, str] = {}  # their senders
        self._turn = asyncio.Event()  # the head of _replayed was taken

    def expect(self, generations: dict[str, int], places: dict[str, list[int]]) -> None:
        """A restore: pushes of replay generations before ``generations`` are dropped, and
        the pushes that had ``places`` (per sender; from this state's ``taken`` on) are taken
        first, in the order of their places, before anything else."""
        for sender, generation in generations.items():
            self._senders.setdefault(sender, SenderState()).generation = generation
        self._expected_from = {place: sender for sender, held in places.items()
                               for place in held if place >= self.taken}
        self._replayed = deque(sorted(self._expected_from))

    def _forget_places_of(self, sender: str) -> None:
        """``sender`` was restored itself: it sends anew, not what it had sent."""
        kept = [p for p in self._replayed if self._expected_from.get(p) != sender]
        if len(kept) != len(self._replayed):
            self._replayed = deque(kept)
            self._next_turn()

    def _next_turn(self) -> None:
        """Wake the pushes waiting for the replay's order to reach theirs."""
        self._turn.set()
        self._turn = asyncio.Event()

    def current(self, state: SenderState, header: Header) -> bool:
        """Whether the push's epoch and replay generation are still the sender's."""
        return header[0] == state.epoch and header[4] >= state.generation

    async def admit(self, sender: str, header: Header) -> SenderState | None:
        """Wait for the turn of this push; None if it is to be dropped (an epoch or a replay
        generation that is over, or a sequence number already taken)."""
        epoch, start, seq, _, generation, place = header
        state = self._senders.get(sender)
        if state is None:
            state = self._senders[sender] = SenderState(epoch, start)
        if epoch > state.epoch:  # the sender was restored: it numbers its pushes anew
            state.epoch, state.next_seq = epoch, start
            self._unpark(sender, lambda key: key[1] < epoch)
            self._forget_places_of(sender)
        if generation > state.generation:
            state.generation = generation
        if epoch < state.epoch or generation < state.generation or seq < state.next_seq:
            return None
        if seq > state.next_seq:
            if (sender, epoch, seq) in self._parked:  # sent again while the first waits
                return None
            parked = asyncio.get_running_loop().create_future()
            self._parked[(sender, epoch, seq)] = parked
            if not await parked:
                return None
            state = self._senders[sender]
        while self._replayed and self._replayed[0] != place:  # the replay's order first
            await self._turn.wait()
        return state

    def _unpark(self, sender: str, which: Callable[[tuple[str, int, int]], bool]) -> None:
        for key in [k for k in self._parked if k[0] == sender and which(k)]:
            self._parked.pop(key).set_result(False)

    def done(self, sender: str, header: Header, taken: bool) -> int:
        """Let the sender's next push in; the place this push got if ``taken``, else -1."""
        epoch, _, seq, _, _, place = header
        state = self._senders[sender]
        if state.epoch == epoch:
            state.next_seq = seq + 1
            waiting = self._parked.pop((sender, epoch, seq + 1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(True)
        if not taken:
            return -1
        if self._replayed and self._replayed[0] == place:
            self._replayed.popleft()
            self._next_turn()
        self.taken += 1
        return self.taken - 1

    @staticmethod
    def unseen(state: SenderState, header: Header, items: list[Any]) -> tuple[list[Any], int]:
        """What of ``items`` the receiver does not have yet (possibly nothing), and the
        sender's records taken once it is in (the caller sets ``state.admitted`` to that)."""
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

    def resumed(self) -> None:
        """A resumed job: every sender starts again at epoch 0 and replay generation 0 (what
        each sender has sent, and this has taken, stays as saved)."""
        for state in self._senders.values():
            state.epoch = state.generation = 0

    def snapshot(self) -> dict[str, Any]:
        return {"taken": self.taken,
                "senders": {sender: astuple(state) for sender, state in self._senders.items()}}

    def restore(self, saved: dict[str, Any]) -> None:
        self.taken = saved["taken"]
        self._senders = {sender: SenderState(*values) for sender, values in
                         saved["senders"].items()}


class Receiver(ABC):
    """Where one stage instance sends to one instance of the next stage, in order."""

    name = ""  # the receiving actor's name, if it is an actor

    @abstractmethod
    async def send(self, items: list[Any]) -> None:
        """Hand over ``items`` (batches and control messages), waiting for room."""

    async def settle(self) -> None:
        """Wait until everything sent was received."""

    def prepare_replay(self) -> tuple[int, list[int]]:
        """The receiver is being restored: start a new replay generation and hold what is
        sent; the generation, and the places the pushes to send again had."""
        return 0, []

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
        self.overflow_ok: Callable[[], bool] = lambda: False
        # header, items, and the place the receiver gave it (-1: not known)
        self._buffer: deque[list[Any]] = deque()
        self._barriers: dict[int, int] = {}  # checkpoint id -> seq of its barrier
        self._in_flight: deque[tuple[Any, int, list[Any] | None]] = deque()
        self._generation = 0  # replays so far: a failed call of an older one is replayed
        self._down = False  # the receiver died: pushes wait in the buffer for replay
        self._replaying = False  # replay() sends the buffer, what is sent meanwhile too
        self._trim_after_replay = 0  # a checkpoint completed during the replay
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
        header = (self.epoch, self.start, self.seq, self.offset, self._generation, -1)
        self.seq += 1
        self.offset += size
        entry = None
        if self.capacity is not None:
            entry = [header, items, -1]
            self._buffer.append(entry)
            if type(first) is Barrier:
                self._barriers[first.id] = header[2]
            if self._replaying:  # the replay sends it, after what came before it
                return
        await self._push(header, items, entry)

    async def _room(self) -> None:
        """Backpressure from a full replay buffer (after asking for a checkpoint). While a
        checkpoint this instance has not taken yet is pending, it may go past the bound (by
        what reaches it before its barrier): the checkpoint that trims the buffer needs it
        to go on."""
        if self.capacity is None:
            return
        if len(self._buffer) >= self.capacity // 2 and self._hurry is not None:
            self._hurry()
        while len(self._buffer) >= self.capacity and not self.overflow_ok():
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), ROOM_POLL)
            except TimeoutError:
                pass

    async def _push(self, header: Header, items: list[Any], entry: list[Any] | None, *,
                    replay: bool = False) -> None:
        while len(self._in_flight) >= self.credits:
            await self._settle_one()
        if self._replaying and not replay:
            return  # a replay began while this waited: it sends this too, in order
        if not self._down:
            header = (*header[:4], self._generation, header[5])
            call = self.handle.push.remote(self.sender, header, items)
            self._in_flight.append((call, self._generation, entry))

    async def _settle_one(self) -> None:
        call, generation, entry = self._in_flight.popleft()
        try:
            place = await call
            if entry is not None and place >= 0:
                entry[2] = place
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

    def prepare_replay(self) -> tuple[int, list[int]]:
        self._generation += 1
        self._replaying = True  # from now on sends wait in the buffer for replay()
        self._down = False
        self._in_flight.clear()
        places = []
        for _, _, place in self._buffer:
            if place < 0:  # unknown from here on: what follows goes after the known ones
                break
            places.append(place)
        return self._generation, places

    async def replay(self) -> None:
        """Send what the buffer holds again, with the places the receiver had given it (up
        to the first unknown one), and what is sent meanwhile after it, in order."""
        self._changed.set()
        numbered = True
        try:
            cursor = self._buffer[0][0][2] if self._buffer else self.seq
            while self._buffer and cursor <= self._buffer[-1][0][2]:
                index = max(0, cursor - self._buffer[0][0][2])  # seqs in the buffer are
                entry = self._buffer[index]  # consecutive; trims only drop the head
                header, items, place = entry
                numbered = numbered and place >= 0
                cursor = header[2] + 1
                await self._push((*header[:5], place if numbered else -1), items, entry,
                                 replay=True)
        finally:
            self._replaying = False
            if self._trim_after_replay:
                self.checkpoint_complete(self._trim_after_replay)

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Forget what was sent before the barrier of a complete checkpoint (once a replay
        in progress is over: the receiver may have been restored from an older one)."""
        if self._replaying:
            self._trim_after_replay = max(self._trim_after_replay, checkpoint_id)
            return
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
