"""The two halves of delivery a transport drives: ``Subscriber`` (takes a topic's batches) and
``Processor`` (turns a batch into what an operator topic publishes). Both report per-event
failures instead of raising, so one bad record never stops the others."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from eventray._model.event import Event

Failures = list[tuple[Event, BaseException]]


class Downstream(Protocol):
    """A topic a subscriber forwards to, as flushes see it."""

    async def _flush(self, visited: set[Any]) -> None: ...


class Subscriber(ABC):
    """Receives a topic's events in batches."""

    name: str = "subscriber"

    async def open(self) -> None:
        """Called once before the first batch."""

    async def close(self) -> None:
        """Called once after the last batch."""

    @abstractmethod
    async def deliver(self, batch: list[Event]) -> Failures:
        """Hand ``batch`` over in order; return the events that failed and why."""

    async def flush(self) -> None:
        """Make what was delivered so far durable (sinks) or reach its end (topics)."""

    def downstream(self) -> Downstream | None:
        """The topic this subscriber forwards to, so flushes can follow the chain."""
        return None


class Processor(ABC):
    """Turns a batch into the batch an operator topic publishes."""

    name: str = "operator"

    @abstractmethod
    async def process(self, batch: list[Event]) -> tuple[list[Event], Failures]:
        """The events to publish, and the events that failed with their errors."""
