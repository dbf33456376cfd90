"""How stages in the program's own process reach the bus's topics."""

from __future__ import annotations

from typing import Any, Protocol

from eventray._model.event import DeadLetter, Event
from eventray._runtime.context import EventStream, StageContext
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

    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        await self.bus._publish_dead_letters(letters)

    async def publish(self, topic: str, events: list[Event]) -> None:
        await self.bus.topic(topic)._ingest(events)

    async def subscribe(self, topic: str) -> EventStream:
        stream = TopicStream(self.bus.topic(topic), self.bus.buffer_size, name="stream")
        await stream.ready()
        return stream
