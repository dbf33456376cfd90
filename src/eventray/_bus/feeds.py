"""Topic sources: a source connector attached to a topic publishes into it."""

from __future__ import annotations

from typing import Any

from eventray._model.protocols import Source
from eventray._runtime.context import StageContext
from eventray._runtime.readers import ConnectorReader
from eventray._topics.topic import Topic


async def feed(topic: Topic[Any], source: Source, ctx: StageContext, max_batch: int) -> None:
    """Publish what ``source`` reads into ``topic`` until it ends, through the same reader
    streams use: failures to start or read back off and retry (a flaky service slows a
    feed down but never ends it), undecodable records go to the dead-letter topic."""
    reader = ConnectorReader(source)
    await reader.open(ctx)
    try:
        while (batch := await reader.read(max_batch)) is not None:
            if len(batch):
                await topic._publish_events(batch.to_events())
    finally:
        await reader.close()
