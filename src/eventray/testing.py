"""Helpers for testing pipelines built on eventray: in-memory sources, sinks and recorders.

They are what eventray's own tests use::

    async with er.connect("memory") as bus:
        received = Recorder()
        bus.topic("in", source=ListSource(values=[1, 2, 3])) >> received
        assert await received.wait_for(3) == [1, 2, 3]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ._connectors.base import BaseSink, BaseSource, ConnectorConfig
from ._model.event import Event


class ListSourceConfig(ConnectorConfig):
    values: list[Any]


class ListSource(BaseSource[ListSourceConfig]):
    """A bounded source of the given values; its position is the index of the next one."""

    kind = "list-source"
    config_type = ListSourceConfig
    bounded = True

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.position = 0
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def read(self, max_events: int) -> Sequence[Event] | None:
        values = self.config.values
        if self.position >= len(values):
            return None
        end = min(len(values), self.position + max_events)
        batch = [Event(value, position=i) for i, value in enumerate(values[self.position:end],
                                                                    self.position)]
        self.position = end
        return batch

    def snapshot(self) -> int:
        return self.position

    def restore(self, state: Any) -> None:
        self.position = int(state)

    async def stop(self) -> None:
        self.stopped = True


class ListSinkConfig(ConnectorConfig):
    pass


class ListSink(BaseSink[ListSinkConfig]):
    """A sink that keeps every event written to it, in order."""

    kind = "list-sink"
    config_type = ListSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.events: list[Event] = []
        self.flushes = 0
        self.started = False
        self.stopped = False

    @property
    def values(self) -> list[Any]:
        return [event.value for event in self.events]

    async def start(self) -> None:
        self.started = True

    async def write(self, batch: Sequence[Event]) -> None:
        self.events.extend(batch)

    async def flush(self) -> None:
        self.flushes += 1

    async def stop(self) -> None:
        self.stopped = True


class Recorder:
    """A subscriber that records the values it gets; ``await wait_for(n)`` to collect them."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, value: Any) -> None:
        self.values.append(value)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:  # noqa: ASYNC109
        """The first ``count`` values, waiting up to ``timeout`` seconds for them."""
        async with asyncio.timeout(timeout):
            while len(self.values) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.values[:count]
