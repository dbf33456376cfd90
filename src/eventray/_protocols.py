"""The protocols users and plugin authors implement: Source, Sink, Operator, Transport.

Protocols describe what eventray accepts; any object with these methods works. Base classes
that give an implementation most of this for free live in ``eventray._connector``
(``BaseSource``, ``BaseSink``) and ``eventray._polling`` (``PollingSource``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._event import Event

if TYPE_CHECKING:
    from ._adapters import Processor, Subscriber
    from ._bus import Bus
    from ._delivery import SubscriptionSpec
    from ._job import JobBackend
    from ._plan import JobPlan


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


@runtime_checkable
class TopicBackend(Protocol):
    """One topic as a transport hosts it.

    ``publish`` waits for room at every subscriber (backpressure), not for delivery;
    ``flush`` waits until every subscriber has processed everything published before it.
    Delivery to each subscriber follows its ``SubscriptionSpec``: in order unless it is
    unordered, failures reported through ``spec.on_failures``.
    """

    name: str

    async def publish(self, batch: list[Event]) -> None: ...

    async def subscribe(self, spec: SubscriptionSpec) -> None: ...

    async def unsubscribe(self, spec: SubscriptionSpec, *, drain: bool) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Hosts topics (and, with streams, runs stages).

    Registered under the ``eventray.transports`` entry-point group as a factory called with
    the URL given to ``er.connect`` and its keyword options. ``adapt_subscriber`` and
    ``adapt_operator`` let a transport accept subscriber and operator kinds only it knows
    (Ray actors, Ray tasks); they return None for anything else. ``run_job`` starts a
    stream's stages; ``in_process`` says whether they all run in the calling process (then
    driver-side sinks need no stage of their own); ``batch_size`` is the micro-batch size
    streams use on it unless ``run(batch_size=...)`` says otherwise (larger where every hop
    costs a remote call).
    """

    name: str
    in_process: bool
    batch_size: int

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def topic_backend(self, name: str) -> TopicBackend: ...

    def adapt_subscriber(self, target: object) -> Subscriber | None: ...

    def adapt_operator(self, target: object) -> Processor | None: ...

    async def run_job(self, plan: JobPlan, bus: Bus) -> JobBackend: ...
