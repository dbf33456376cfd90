"""Where streams start: values, collections, text files, topics and source connectors.

A ``Reader`` hands its stage ``Batch``es; ``snapshot``/``restore`` give its position for
checkpoints. ``fresh(index, parallelism)`` makes the reader of one stage instance.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventray._model.batch import Batch
from eventray._model.event import DeadLetter, describe

if TYPE_CHECKING:
    from .context import StageContext

log = logging.getLogger("eventray")


class Reader(ABC):
    """The source end of a stream."""

    name = "source"
    bounded = True  # ends by itself (collect() refuses a stream that never does)
    driver_local = False  # reads data only the driver process has (memory, local files)

    def topics(self) -> tuple[str, ...]:
        """The bus topics this reader subscribes to (transports create them first)."""
        return ()

    async def open(self, ctx: StageContext) -> None:
        """Called once before the first ``read``."""

    @abstractmethod
    async def read(self, max_records: int) -> Batch | None:
        """Up to ``max_records`` records (possibly none yet), or None at the end."""

    async def drain(self, max_records: int) -> Batch | None:
        """After a drain request: what the reader already holds, then None."""
        return None

    def snapshot(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        """Resume from a position ``snapshot`` returned."""

    async def close(self) -> None:
        """Called once at the end."""

    def fresh(self, index: int, parallelism: int) -> Reader:
        return copy.copy(self)


class CollectionReader(Reader):
    """Values from a sequence (or any iterable, read lazily); the position is a count."""

    name = "from_collection"
    driver_local = True

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = values
        self.position = 0
        self._iterator: Iterator[Any] | None = None

    def fresh(self, index: int, parallelism: int) -> CollectionReader:
        return CollectionReader(self.values)

    async def read(self, max_records: int) -> Batch | None:
        values = self.values
        if isinstance(values, Sequence):
            chunk = list(values[self.position : self.position + max_records])
        else:
            if self._iterator is None:
                self._iterator = islice(iter(values), self.position, None)
            chunk = list(islice(self._iterator, max_records))
        if not chunk:
            return None
        self.position += len(chunk)
        return Batch(chunk)

    def snapshot(self) -> int:
        return self.position

    def restore(self, state: Any) -> None:
        self.position = int(state)
        self._iterator = None


class TextFileReader(Reader):
    """One record per line of a text file (newline stripped); the position is a byte offset."""

    name = "read_text_file"
    driver_local = True

    def __init__(self, path: str | Path, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.offset = 0

    def fresh(self, index: int, parallelism: int) -> TextFileReader:
        return TextFileReader(self.path, self.encoding)

    def _read_lines(self, max_records: int) -> tuple[list[str], int]:
        with self.path.open("rb") as file:
            file.seek(self.offset)
            lines = [line for _, line in zip(range(max_records), file, strict=False)]
            return [line.decode(self.encoding).rstrip("\r\n") for line in lines], file.tell()

    async def read(self, max_records: int) -> Batch | None:
        lines, offset = await asyncio.to_thread(self._read_lines, max_records)
        if not lines:
            return None
        self.offset = offset
        return Batch(lines)

    def snapshot(self) -> int:
        return self.offset

    def restore(self, state: Any) -> None:
        self.offset = int(state)


class TopicReader(Reader):
    """Everything published to a bus topic after the stream starts; unbounded."""

    bounded = False

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.name = f"from_topic:{topic}"
        self._events: Any = None
        self._draining = False

    def fresh(self, index: int, parallelism: int) -> TopicReader:
        return TopicReader(self.topic)

    def topics(self) -> tuple[str, ...]:
        return (self.topic,)

    async def open(self, ctx: StageContext) -> None:
        self._events = await ctx.subscribe(self.topic)

    async def read(self, max_records: int) -> Batch | None:
        batch: Batch | None = await self._events.get_batch(max_records)
        return batch

    async def drain(self, max_records: int) -> Batch | None:
        if not self._draining:
            self._draining = True
            await self._events.finish()
        return await self.read(max_records)

    async def close(self) -> None:
        if self._events is not None:
            await self._events.aclose()


class ConnectorReader(Reader):
    """A ``Source`` connector. Read errors back off and retry; ``DeadLetter`` values that
    the source returns for records it could not decode go to the dead-letter topic."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name = f"from_source:{getattr(source, 'kind', '') or type(source).__name__}"
        # a server (a webhook) listens where the program that configured it runs
        self.driver_local = bool(getattr(source, "runs_in_driver", False))
        self._ctx: StageContext | None = None
        self._started = False

    @property
    def bounded(self) -> bool:  # type: ignore[override]
        """Whether the source ends by itself: only if it says so (``bounded = True``)."""
        return getattr(self.source, "bounded", False) is True

    def fresh(self, index: int, parallelism: int) -> ConnectorReader:
        return ConnectorReader(self.source)

    async def open(self, ctx: StageContext) -> None:
        self._ctx = ctx

    async def read(self, max_records: int) -> Batch | None:
        failures = 0
        while True:
            try:
                if not self._started:
                    await self.source.start()
                    self._started = True
                events = await self.source.read(max_records)
                break
            except Exception as exc:
                failures += 1
                wait = random.uniform(0, min(30.0, 0.1 * 2**failures))
                log.warning("%s failed (%s); retrying in %.2fs", self.name, describe(exc), wait)
                await asyncio.sleep(wait)
        if events is None:
            return None
        letters = [e.value for e in events if isinstance(e.value, DeadLetter)]
        if letters:
            assert self._ctx is not None
            await self._ctx.dead_letters(letters)
            events = [e for e in events if not isinstance(e.value, DeadLetter)]
        return Batch.from_events(events)

    def snapshot(self) -> Any:
        return self.source.snapshot()

    def restore(self, state: Any) -> None:
        self.source.restore(state)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.source.stop()
