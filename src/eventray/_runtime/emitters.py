"""Where a stage instance's output goes: partitioned to the next stage's instances."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from eventray._model.batch import Batch, split_by_key

from .context import Barrier, End


class Emitter(ABC):
    """Sends a stage instance's output to the next stage's instances."""

    @abstractmethod
    async def emit(self, batch: Batch) -> None:
        """Send ``batch`` on, waiting while the receivers are full."""

    @abstractmethod
    async def end(self) -> None:
        """Tell every receiver this instance is done."""

    async def barrier(self, barrier: Barrier) -> None:
        """Send a checkpoint barrier to every receiver, in order with the data."""

    def snapshot(self) -> Any:
        """What the emitter needs to resume where it was (checkpoints)."""
        return None

    def restore(self, state: Any) -> None:
        """Resume from a ``snapshot``."""

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable: what was sent before it need not be kept."""


class PartitioningEmitter(Emitter):
    """Cuts output for each next stage by its exchange (by key, or whole batches in turn)
    and sends the pieces with ``send``; ``end`` sends ``End`` to every receiver."""

    def __init__(self, sender: str, exchanges: Sequence[str], fan_out: list[int]) -> None:
        self.sender = sender
        self.exchanges = exchanges  # per next stage: "hash" or "rebalance"
        self.fan_out = fan_out  # per next stage: its number of instances
        self._turn = 0

    @abstractmethod
    async def send(self, output: int, receiver: int, items: list[Any]) -> None:
        """Deliver ``items`` (batches or control messages) to one receiver, in order."""

    async def emit(self, batch: Batch) -> None:
        for output, (exchange, receivers) in enumerate(
            zip(self.exchanges, self.fan_out, strict=True)
        ):
            if receivers == 1:
                await self.send(output, 0, [batch])
            elif exchange == "hash":
                for receiver, part in enumerate(split_by_key(batch, receivers)):
                    if len(part):
                        await self.send(output, receiver, [part])
            else:
                self._turn += 1
                await self.send(output, self._turn % receivers, [batch])

    async def end(self) -> None:
        await self._to_all(End(self.sender))

    async def barrier(self, barrier: Barrier) -> None:
        await self._to_all(barrier)

    async def _to_all(self, message: Any) -> None:
        for output, receivers in enumerate(self.fan_out):
            for receiver in range(receivers):
                await self.send(output, receiver, [message])

    def snapshot(self) -> Any:
        return {"turn": self._turn}

    def restore(self, state: Any) -> None:
        self._turn = state["turn"]


class NullEmitter(Emitter):
    """The last stage: output goes nowhere (sinks have already seen it)."""

    async def emit(self, batch: Batch) -> None:
        return None

    async def end(self) -> None:
        return None
