"""Calling Ray actors and tasks with events, in batches or one event per call.

A ``Target`` is picklable, so a topic actor can deliver to it as well as a driver can.
Errors come back per record (its index in the batch) as ``"Type: message"`` strings (the
original exception, not Ray's wrapper), ready to become dead letters.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

from ray.exceptions import RayTaskError

from eventray import Event
from eventray.spi import describe

from ._wire import Wire, land, values_argument


class RemoteFailure(Exception):
    """An error raised in another process, carried as its ``"Type: message"`` text."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def error_text(error: BaseException) -> str:
    """What a failed Ray call raised, as ``"Type: message"``."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        return describe(error.cause)
    return describe(error)


def runs_in_order(actor: Any) -> bool:
    """Whether Ray runs this actor's calls in the order they were made: true only for
    synchronous, single-threaded actors. Calls to anything else are made one at a time."""
    return getattr(actor, "_ray_allow_out_of_order_execution", True) is False


Outcome = Awaitable[list[tuple[int, str]]]


class Target(ABC):
    """Something remote that takes events."""

    name: str
    batches_in_flight = 1  # batches a topic actor may have started and not settled

    @abstractmethod
    def start(self, batch: Wire) -> Outcome:
        """Start handing ``batch`` over; the outcome is which records failed, and why."""

    async def deliver(self, batch: Wire) -> list[tuple[int, str]]:
        return await self.start(batch)


class BatchCall(Target):
    """One call per batch with the list of values (``ingest_batch``); a second batch's call
    is made before the first returns when the actor runs calls in order."""

    def __init__(self, method: Any, name: str, in_order: bool) -> None:
        self.method = method
        self.name = name
        self.batches_in_flight = 2 if in_order else 1

    def start(self, batch: Wire) -> Outcome:
        return self._settle(self.method.remote(values_argument(batch)), len(batch))

    async def _settle(self, ref: Any, size: int) -> list[tuple[int, str]]:
        try:
            await ref
        except Exception as exc:
            text = error_text(exc)
            return [(index, text) for index in range(size)]
        return []


class EventCalls(Target):
    """One call per event (``ingest``, ``append``, an actor method or a task), up to
    ``window`` calls in flight. Calls to an ordinary (synchronous) actor run in the order they
    were made; tasks run in any order."""

    def __init__(self, method: Any, name: str, window: int) -> None:
        self.method = method
        self.name = name
        self.window = window

    def start(self, batch: Wire) -> Outcome:
        return self._calls(batch)

    async def _calls(self, wire: Wire) -> list[tuple[int, str]]:
        values = (await land(wire)).values
        failures: list[tuple[int, str]] = []
        for start in range(0, len(values), self.window):
            refs = [self.method.remote(value) for value in values[start : start + self.window]]
            settled = await asyncio.gather(*refs, return_exceptions=True)
            failures += [(start + offset, error_text(result))
                         for offset, result in enumerate(settled)
                         if isinstance(result, BaseException)]
        return failures


class OutputCalls:
    """Calls an actor as an operator: ``ingest_batch(values) -> values`` or one
    ``ingest(value) -> value`` per event; ``None`` results are dropped."""

    def __init__(self, method: Any, batch: bool, window: int) -> None:
        self.method = method
        self.batch = batch
        self.window = window

    async def call(self, batch: list[Event]) -> tuple[list[Event], list[tuple[Event, str]]]:
        if self.batch:
            try:
                results = await self.method.remote([event.value for event in batch])
            except Exception as exc:
                text = error_text(exc)
                return [], [(event, text) for event in batch]
            if not isinstance(results, (list, tuple)) or len(results) != len(batch):
                got = (f"{len(results)} results" if isinstance(results, (list, tuple))
                       else type(results).__name__)
                text = (f"ValueError: {_method_name(self.method)} returned {got} for "
                        f"{len(batch)} events; it must return one result per event (None "
                        "drops one)")
                return [], [(event, text) for event in batch]
            return _outputs(batch, list(results)), []
        outputs: list[Event] = []
        failed: list[tuple[Event, str]] = []
        for start in range(0, len(batch), self.window):
            chunk = batch[start : start + self.window]
            settled = await asyncio.gather(
                *(self.method.remote(event.value) for event in chunk), return_exceptions=True
            )
            for event, result in zip(chunk, settled, strict=True):
                if isinstance(result, BaseException):
                    failed.append((event, error_text(result)))
                else:
                    outputs += _outputs([event], [result])
        return outputs, failed


def _outputs(batch: list[Event], results: list[Any]) -> list[Event]:
    out = []
    for event, result in zip(batch, results, strict=True):
        if result is None:
            continue
        out.append(result if isinstance(result, Event) else event.replace_value(result))
    return out


def _method_name(method: Any) -> str:
    """``Class.method`` of a Ray actor method, for error texts."""
    actor = getattr(method, "_actor", None)
    descriptor = getattr(actor, "_ray_actor_creation_function_descriptor", None)
    return f"{getattr(descriptor, 'class_name', None) or 'actor'}." \
           f"{getattr(method, '_method_name', 'ingest_batch')}"
