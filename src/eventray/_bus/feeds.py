"""Topic sources: a source connector attached to a topic publishes into it."""

from __future__ import annotations

from typing import Any

from eventray._model.batch import Batch
from eventray._model.protocols import Source
from eventray._runtime.context import StageContext
from eventray._runtime.readers import ConnectorReader
from eventray._topics.topic import Topic


class Feed:
    """Publishes what ``source`` reads into ``topic`` until it ends, through the same reader
    streams use: failures to start or read back off and retry (a flaky service slows a feed
    down but never ends it), undecodable records go to the dead-letter topic.
    ``stop_reading`` (a graceful close) ends it once what the source took is published."""

    def __init__(self, topic: Topic[Any], source: Source, ctx: StageContext,
                 max_batch: int) -> None:
        self.topic = topic
        self.reader = ConnectorReader(source)
        self.ctx = ctx
        self.max_batch = max_batch
        self._stopping = False

    def stop_reading(self) -> None:
        self._stopping = True
        self.reader.stop_reading()

    async def run(self) -> None:
        reader = self.reader
        await reader.open(self.ctx)
        try:
            while not self._stopping and (batch := await reader.read(self.max_batch)) is not None:
                await self._publish(batch)
            while self._stopping and (batch := await reader.drain(self.max_batch)) is not None:
                await self._publish(batch)
        finally:
            await reader.close()

    async def _publish(self, batch: Batch) -> None:
        if len(batch):
            await self.topic._publish_events(batch.to_events())
