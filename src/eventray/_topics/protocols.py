"""What a transport implements: the ``Transport`` and ``TopicBackend`` protocols."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eventray._model.event import Event
from eventray._runtime.context import StageContext
from eventray._runtime.local import JobBackend
from eventray._runtime.plan import JobPlan

from .delivery import SubscriptionSpec
from .subscriber import Processor, Subscriber


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
    driver-side sinks need no stage of their own). ``ctx`` is how stages reach the bus's
    topics from the program's own process; ``batch_size`` is the micro-batch size
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

    async def run_job(self, plan: JobPlan, ctx: StageContext) -> JobBackend: ...
