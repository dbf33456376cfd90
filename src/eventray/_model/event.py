"""Events and dead letters: the records every hop carries."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .errors import OperatorError


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Event:
    """A value with its key, event time (ms since epoch), headers and source position.

    Subscribers mostly see ``value``; connectors and operators see the whole event.
    """

    value: Any
    key: Any = None
    ts: int = field(default_factory=now_ms)
    headers: dict[str, str] | None = None
    position: Any = None

    def replace_value(self, value: Any) -> Event:
        """A copy carrying ``value`` with this event's key, time and headers."""
        return Event(value, self.key, self.ts, self.headers, self.position)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, published to the ``dead-letters`` topic.

    ``error`` is ``"ExceptionType: message"`` so it survives crossing processes;
    ``stage`` names the subscriber, topic operator or stream stage that failed.
    """

    value: Any
    error: str
    stage: str
    key: Any = None
    ts: int | None = None

    @classmethod
    def of(cls, event: Event, error: BaseException | str, stage: str) -> DeadLetter:
        """The dead letter for ``event`` failing in ``stage`` with ``error``."""
        text = error if isinstance(error, str) else describe(error)
        return cls(event.value, text, stage, event.key, event.ts)


def events_from(result: object, operator: str) -> list[Event]:
    """What an ``Operator.process`` returned, checked to be a list of ``Event``s."""
    if not isinstance(result, (list, tuple)):
        raise OperatorError(f"process() must return a list of Events, got "
                            f"{type(result).__name__}", operator=operator)
    for item in result:
        if not isinstance(item, Event):
            raise OperatorError(f"process() must return Events, got a {type(item).__name__} "
                                f"({item!r:.80}); wrap values with event.replace_value(v)",
                                operator=operator)
    return list(result)


def describe(error: BaseException) -> str:
    """``"ExceptionType: message"`` for an exception (or its ``description``, when it carries
    one from another process)."""
    description = getattr(error, "description", None)
    if isinstance(description, str):
        return description
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name
