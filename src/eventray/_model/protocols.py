"""What users pass in: the Source, Sink and Operator protocols.

Protocols describe what eventray accepts; any object with these methods works. Base classes
that give a connector most of this for free are ``er.BaseSource``, ``er.BaseSink`` and
``er.PollingSource``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

from .event import Event


@runtime_checkable
class Source(Protocol):
    """Produces events in batches.

    ``read`` waits for at least one event and returns up to ``max_events``; it may return an
    empty batch, and returns ``None`` once a bounded source is exhausted. A record the source
    cannot decode comes back as an event whose value is an ``er.DeadLetter``: it goes to the
    dead-letter topic, not downstream. ``snapshot`` is the position to resume from,
    ``restore`` resumes there, and ``commit`` acknowledges upstream once a checkpoint holding
    that position is durable. A source class with ``runs_in_driver = True`` (a server bound
    to this machine) is run in the program's own process by transports that place stages.
    A source is unbounded (``collect()`` refuses it) unless it has ``bounded = True``.

    Two optional methods: ``split(index, count)`` returns the source of one of ``count``
    instances (``set_parallelism`` needs it); ``stop_reading()`` (a drain) makes a ``read``
    in progress return soon with what it has, and later reads return what is buffered, then
    None. A stage never cancels a read, so without ``stop_reading`` a drain waits for it.
    """

    async def start(self) -> None: ...

    async def read(self, max_events: int) -> Sequence[Event] | None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...

    async def commit(self, state: Any) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Consumes events in batches; ``flush`` makes everything written so far durable."""

    async def start(self) -> None: ...

    async def write(self, batch: Sequence[Event]) -> None: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Operator(Protocol):
    """A batch-at-a-time processing step, sync or async.

    ``process`` returns the events to pass on (possibly fewer, more or none). An operator that
    keeps state also defines ``snapshot() -> state`` and ``restore(state)`` so checkpoints can
    save and restore it.
    """

    def process(self, batch: list[Event]) -> list[Event] | Awaitable[list[Event]]: ...
