"""How stages in the program's own process reach the bus's topics."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from eventray._model.batch import Batch
from eventray._model.event import DeadLetter, Event
from eventray._runtime.context import EventStream, StageContext
from eventray._runtime.tasks import cancel_and_wait
from eventray._topics.iteration import TopicStream
from eventray._topics.topic import Topic


class TopicHost(Protocol):
    """The part of the bus stages use."""

    buffer_size: int

    def topic(self, name: str) -> Topic[Any]: ...

    async def _publish_dead_letters(self, letters: list[DeadLetter]) -> None: ...


class BusStageContext(StageContext):
    """Stages in this process reach the bus directly."""

    def __init__(self, bus: TopicHost) -> None:
        self.bus = bus
        self._groups: dict[str, _SharedStream] = {}

    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        await self.bus._publish_dead_letters(letters)

    async def publish(self, topic: str, events: list[Event]) -> None:
        await self.bus.topic(topic)._ingest(events)

    async def subscribe(self, topic: str, *, group: str | None = None) -> EventStream:
        shared = self._groups.get(group) if group is not None else None
        if shared is None:
            stream = TopicStream(self.bus.topic(topic), self.bus.buffer_size, name="stream")
            await stream.ready()
            if group is None:
                return stream
            shared = self._groups[group] = _SharedStream(stream)
        shared.users += 1
        return _Member(shared)


class _SharedStream:
    """One subscription read by several stage instances."""

    def __init__(self, stream: TopicStream) -> None:
        self.stream = stream
        self.users = 0
        self.finishing: asyncio.Task[None] | None = None

    async def finish(self) -> None:
        if self.finishing is None:
            self.finishing = asyncio.get_running_loop().create_task(self.stream.finish())
        await asyncio.shield(self.finishing)


class _Member:
    """One instance's view of a shared subscription."""

    def __init__(self, shared: _SharedStream) -> None:
        self.shared = shared
        self._closed = False

    async def get(self, max_items: int) -> list[Event] | None:
        return await self.shared.stream.get(max_items)

    async def get_batch(self, max_items: int) -> Batch | None:
        return await self.shared.stream.get_batch(max_items)

    def task_done(self, count: int) -> None:
        self.shared.stream.task_done(count)

    async def finish(self) -> None:
        await self.shared.finish()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.shared.users -= 1
        if self.shared.users == 0:
            if self.shared.finishing is not None:
                await cancel_and_wait(self.shared.finishing, "ending a shared subscription")
            await self.shared.stream.aclose()
