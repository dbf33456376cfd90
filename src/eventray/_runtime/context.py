"""What a stage instance talks to: its transport (``StageContext``), its input (``Inbox``,
``EventStream``), the in-band ``End`` and ``Barrier`` messages, and its counters."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventray._model.batch import Batch
from eventray._model.event import DeadLetter, Event


class End:
    """In-band message: the sending instance has nothing more."""

    __slots__ = ("sender",)

    def __init__(self, sender: str) -> None:
        self.sender = sender

    def __repr__(self) -> str:
        return f"End({self.sender!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (End, (self.sender,))


class Barrier:
    """In-band message: the sending instance took part in checkpoint ``id``; what it sent
    before belongs to the checkpoint, what it sends after does not. ``final``: the last
    checkpoint of a drain (what follows is the end, and open windows stay in the checkpoint)."""

    __slots__ = ("final", "id", "sender")

    def __init__(self, id: int, sender: str, final: bool = False) -> None:
        self.id = id
        self.sender = sender
        self.final = final

    def __repr__(self) -> str:
        return f"Barrier({self.id}, {self.sender!r}{', final' if self.final else ''})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Barrier, (self.id, self.sender, self.final))


class EventStream(Protocol):
    """What ``StageContext.subscribe`` returns: batches of a topic's events."""

    async def get(self, max_items: int) -> list[Event] | None: ...

    async def get_batch(self, max_items: int) -> Batch | None:
        """Like ``get``, as one column batch."""

    def task_done(self, count: int) -> None: ...

    async def finish(self) -> None:
        """Unsubscribe, keeping what was already delivered: ``get`` returns it, then None."""

    async def aclose(self) -> None: ...


class StageContext(ABC):
    """What a stage instance needs from the transport running it."""

    @abstractmethod
    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        """Publish to the bus's dead-letter topic."""

    @abstractmethod
    async def publish(self, topic: str, events: list[Event]) -> None:
        """Publish to a bus topic (``sink(topic)``)."""

    @abstractmethod
    async def subscribe(self, topic: str, *, group: str | None = None) -> EventStream:
        """Subscribe to a bus topic (``from_topic``). Streams of the same ``group`` share one
        subscription: each event reaches one of them, and one ``finish`` ends it for all."""


class Inbox(Protocol):
    """Where a stage instance without a reader takes its input (``AligningInbox``)."""

    async def get(self, max_items: int) -> list[Any] | None: ...

    def task_done(self, count: int) -> None: ...

    def release(self, checkpoint_id: int) -> None:
        """The stage took checkpoint ``checkpoint_id``: senders held after their barrier may
        send again."""


class Checkpoints(ABC):
    """Where a stage instance reports its part of checkpoints: the job's coordinator."""

    @abstractmethod
    async def acknowledge(self, instance: str, checkpoint_id: int, state: bytes) -> None:
        """``instance`` took checkpoint ``checkpoint_id``; ``state`` is its snapshot."""

    @abstractmethod
    async def finished(self, instance: str, state: bytes) -> None:
        """``instance`` ended; ``state`` stands for it in every later checkpoint."""


@dataclass
class StageMetrics:
    """Counters of one stage instance."""

    records_in: int = 0
    records_out: int = 0
    batches: int = 0
    failed: int = 0
    checkpoint_id: int = 0  # the last checkpoint this instance took part in
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def as_dict(self) -> dict[str, float]:
        end = self.finished or time.monotonic()
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "batches": self.batches,
            "failed": self.failed,
            "checkpoint_id": self.checkpoint_id,
            "restarts": self.restarts,
            "seconds": round(end - self.started, 6),
        }
