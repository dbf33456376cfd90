"""``RayTransport``: topics as named actors, stream stages as named actors, on Ray.

Importing Ray takes a few hundred milliseconds, so ``er.connect`` (often called inside a
running event loop) must not: Ray is imported, in a worker thread, when the bus opens.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import TYPE_CHECKING, Any

from eventray import ClosedError, Event, Processor, Subscriber, SubscriptionSpec
from eventray.spi import JobBackend, JobPlan, StageContext, TopicBackend

from ._options import RayOptions, parse_url

if TYPE_CHECKING:
    from ._session import RaySession


class RayTransport:
    """Topics and stream stages as async actors in the Ray namespace ``namespace``.

    ``er.connect("ray")`` joins the Ray this process already runs, the one ``RAY_ADDRESS``
    names, or the machine's running local Ray, or starts a local one (then shut down on
    close, and joined meanwhile by other programs' ``er.connect()``);
    ``er.connect("ray://host:10001")`` connects as a Ray client. Actors this bus created are
    killed when it closes; a Ray it joined is left running. ``connect_timeout`` bounds the
    wait for Ray (a Ray client, whose cluster starts a server per client and sometimes fails
    to under load, gets up to three attempts of that length); losing a joined cluster makes
    every later operation a ``TransportError``. For checkpointed jobs, ``replay_batches`` is
    what each channel between stages keeps for replay and ``max_restarts`` how often a stage
    actor that died is restored before the job fails.
    """

    name = "ray"
    in_process = False
    batch_size = 5000  # an actor call costs about a millisecond here: amortise it

    def __init__(
        self,
        url: str = "ray",
        *,
        namespace: str = "eventray",
        num_cpus: int | None = None,
        stage_num_cpus: float = 0.05,
        runtime_env: dict[str, Any] | None = None,
        queue_size: int = 1000,
        queue_batches: int = 4,
        credits: int = 4,
        event_window: int = 64,
        connect_timeout: float = 30.0,
        replay_batches: int = 128,
        max_restarts: int = 5,
    ) -> None:
        self.options = RayOptions(
            address=parse_url(url), namespace=namespace, num_cpus=num_cpus,
            stage_num_cpus=stage_num_cpus, runtime_env=runtime_env, queue_size=queue_size,
            queue_batches=queue_batches, credits=credits, event_window=event_window,
            connect_timeout=connect_timeout, replay_batches=replay_batches,
            max_restarts=max_restarts,
        )
        self._session: RaySession | None = None

    @property
    def session(self) -> RaySession:
        if self._session is None:
            raise ClosedError("the Ray transport is not open")
        return self._session

    @property
    def attached(self) -> bool:
        """This bus attached the process to Ray (so it detaches it on close)."""
        return self._session is not None and self._session.attached

    async def open(self) -> None:
        module = await asyncio.to_thread(importlib.import_module, "eventray_ray._session")
        session: RaySession = module.RaySession(self.options)
        await session.open()
        self._session = session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def topic_actor(self, topic: str) -> Any:
        return await self.session.topic_actor(topic)

    def topic_backend(self, name: str) -> TopicBackend:
        return _OnOpen(self, name)

    def adapt_subscriber(self, target: object) -> Subscriber | None:
        if "ray" not in sys.modules:  # then target cannot be a Ray actor or task
            return None
        from ._subscribers import subscriber_for

        return subscriber_for(target, self.options.event_window)

    def adapt_operator(self, target: object) -> Processor | None:
        if "ray" not in sys.modules:
            return None
        from ._subscribers import processor_for

        return processor_for(target, self.options.event_window)

    async def run_job(self, plan: JobPlan, ctx: StageContext) -> JobBackend:
        return await self.session.run_job(plan, ctx)


class _OnOpen(TopicBackend):
    """A topic of a bus that may not be open yet: the session's topic, from first use on."""

    def __init__(self, transport: RayTransport, name: str) -> None:
        self.name = name
        self._transport = transport
        self._backend: TopicBackend | None = None

    def _topic(self) -> TopicBackend:
        if self._backend is None:
            self._backend = self._transport.session.topic_backend(self.name)
        return self._backend

    async def publish(self, batch: list[Event]) -> None:
        await self._topic().publish(batch)

    async def subscribe(self, spec: SubscriptionSpec) -> None:
        await self._topic().subscribe(spec)

    async def unsubscribe(self, spec: SubscriptionSpec, *, drain: bool) -> None:
        await self._topic().unsubscribe(spec, drain=drain)

    async def flush(self) -> None:
        await self._topic().flush()

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()

