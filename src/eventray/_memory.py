"""The ``memory`` transport: topics as bounded in-process queues, no Ray needed.

Shaped like a plugin: it uses only ``eventray`` and ``eventray.spi``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from eventray import ClosedError, ConfigError, Event
from eventray.spi import (
    BatchChannel,
    JobBackend,
    JobPlan,
    LocalJob,
    Processor,
    StageContext,
    Subscriber,
    SubscriptionSpec,
    TaskOwner,
    deliver_from,
)


@dataclass
class _Route:
    channel: BatchChannel[Event]
    task: asyncio.Task[None]


class MemoryTopic:
    """A topic in this process: one bounded queue and one delivery task per subscriber."""

    def __init__(self, name: str, tasks: TaskOwner, queue_size: int) -> None:
        self.name = name
        self._tasks = tasks
        self._queue_size = queue_size
        self._routes: dict[int, _Route] = {}

    async def publish(self, batch: list[Event]) -> None:
        for route in tuple(self._routes.values()):
            channel = route.channel
            if not channel.put_nowait(batch):
                try:
                    await channel.put(batch)
                except ClosedError:
                    pass  # unsubscribed while we waited for room

    async def subscribe(self, spec: SubscriptionSpec) -> None:
        channel: BatchChannel[Event] = BatchChannel(self._queue_size)
        task = self._tasks.spawn(deliver_from(channel, spec), name=f"{self.name}>{spec.name}")
        self._routes[spec.id] = _Route(channel, task)

    async def unsubscribe(self, spec: SubscriptionSpec, *, drain: bool) -> None:
        route = self._routes.pop(spec.id, None)
        if route is None:
            return
        if drain:
            route.channel.close()
        else:
            route.channel.abandon()
            route.task.cancel()
        await asyncio.gather(route.task, return_exceptions=True)

    async def flush(self) -> None:
        for route in tuple(self._routes.values()):
            await route.channel.join()

    async def close(self) -> None:
        routes = list(self._routes.values())
        self._routes.clear()
        for route in routes:
            route.channel.abandon()
            route.task.cancel()
        await asyncio.gather(*(route.task for route in routes), return_exceptions=True)


class MemoryTransport:
    """Topics (and stream stages) as asyncio tasks and bounded queues in this process.

    Every ``er.connect("memory")`` is a world of its own. ``queue_size`` bounds each
    subscriber's queue, in events.
    """

    name = "memory"
    in_process = True
    batch_size = 1000

    def __init__(self, url: str = "memory", *, queue_size: int = 1000) -> None:
        if url.rstrip("/") not in ("memory", "memory:"):
            raise ConfigError(f"expected 'memory', got {url!r}", kind="memory", field="url")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(
                f"must be a positive int, got {queue_size!r}", kind="memory", field="queue_size"
            )
        self.queue_size = queue_size
        self._tasks = TaskOwner("memory")

    async def open(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        await self._tasks.aclose()

    def topic_backend(self, name: str) -> MemoryTopic:
        return MemoryTopic(name, self._tasks, self.queue_size)

    def adapt_subscriber(self, target: object) -> Subscriber | None:
        return None

    def adapt_operator(self, target: object) -> Processor | None:
        return None

    async def run_job(self, plan: JobPlan, ctx: StageContext) -> JobBackend:
        return await LocalJob(plan, ctx).start()
