"""Where streams start: values, collections, text files, topics and source connectors.

A ``Reader`` hands its stage ``Batch``es; ``snapshot``/``restore`` give its position for
checkpoints. ``fresh(index, parallelism)`` makes the reader of one stage instance: instances
split the input between them (each record is read once), or ``check_parallelism`` refuses.
A read, once started, is never cancelled by the stage: ``stop_reading`` (a drain) makes a
read in progress return soon, and ``drain`` then hands over what the reader still holds.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventray._model.batch import Batch
from eventray._model.errors import ConfigError
from eventray._model.event import DeadLetter, describe

from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from .context import EventStream, StageContext

log = logging.getLogger("eventray")

START_ATTEMPTS = 3  # a source connector whose start() fails this often fails its stage


class Reader(ABC):
    """The source end of a stream."""

    name = "source"
    bounded = True  # ends by itself (collect() refuses a stream that never does)
    position_free = False  # its position does not move with reads: a checkpoint may be
    # taken while a read waits (else it waits for the read, so the position covers it)
    driver_local = False  # reads data only the driver process has (memory, local files)

    def topics(self) -> tuple[str, ...]:
        """The bus topics this reader subscribes to (transports create them first)."""
        return ()

    async def open(self, ctx: StageContext) -> None:
        """Called once before the first ``read``."""

    @abstractmethod
    async def read(self, max_records: int) -> Batch | None:
        """Up to ``max_records`` records (possibly none yet), or None at the end."""

    def check_parallelism(self, parallelism: int) -> None:
        """Raise ``ConfigError`` if ``parallelism`` instances cannot split this input."""
        if parallelism != 1:
            raise ConfigError(f"{self.name} cannot be split between {parallelism} instances",
                              field="parallelism")

    def stop_reading(self) -> None:
        """A drain began: a read in progress should return soon, with what it has."""

    async def drain(self, max_records: int) -> Batch | None:
        """After ``stop_reading``: what the reader still holds, then None."""
        return None

    def snapshot(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        """Resume from a position ``snapshot`` returned."""

    async def commit(self, position: Any) -> None:
        """A checkpoint holding ``position`` is durable: acknowledge upstream up to there."""

    async def close(self) -> None:
        """Called once at the end."""

    def fresh(self, index: int, parallelism: int) -> Reader:
        return copy.copy(self)


class CollectionReader(Reader):
    """Values from a sequence (or any iterable, read lazily); the position is a count."""

    name = "from_collection"
    driver_local = True

    def __init__(self, values: Iterable[Any], index: int = 0, parallelism: int = 1) -> None:
        self.values = values
        self.index = index  # this instance reads the items at index, index + parallelism, ...
        self.parallelism = parallelism
        self.position = 0  # items this instance has read
        self._iterator: Iterator[Any] | None = None

    def check_parallelism(self, parallelism: int) -> None:
        if parallelism != 1 and not isinstance(self.values, Sequence):
            raise ConfigError(
                "a lazy iterable cannot be split between instances; pass a sequence (a list) "
                "or keep the source's parallelism at 1", field="parallelism")

    def fresh(self, index: int, parallelism: int) -> CollectionReader:
        return CollectionReader(self.values, index, parallelism)

    async def read(self, max_records: int) -> Batch | None:
        values = self.values
        if isinstance(values, Sequence):
            step = self.parallelism
            start = self.index + self.position * step
            chunk = list(values[start : start + max_records * step : step])
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

    def __init__(self, path: str | Path, encoding: str = "utf-8", index: int = 0,
                 parallelism: int = 1) -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.index = index  # this instance reads lines index, index + parallelism, ...
        self.parallelism = parallelism
        self.offset = 0  # bytes passed
        self.line = 0  # lines passed

    def check_parallelism(self, parallelism: int) -> None:
        """Any number of instances can share a file, by line number."""

    def fresh(self, index: int, parallelism: int) -> TextFileReader:
        return TextFileReader(self.path, self.encoding, index, parallelism)

    def _read_lines(self, max_records: int) -> tuple[list[str], int, int]:
        mine: list[str] = []
        line = self.line
        with self.path.open("rb") as file:
            file.seek(self.offset)
            for raw in file:
                if line % self.parallelism == self.index:
                    mine.append(raw.decode(self.encoding).rstrip("\r\n"))
                line += 1
                if len(mine) == max_records:
                    break
            return mine, file.tell(), line

    async def read(self, max_records: int) -> Batch | None:
        lines, offset, line = await asyncio.to_thread(self._read_lines, max_records)
        self.offset, self.line = offset, line
        if not lines:
            return None
        return Batch(lines)

    def snapshot(self) -> tuple[int, int]:
        return (self.offset, self.line)

    def restore(self, state: Any) -> None:
        self.offset, self.line = (int(part) for part in state)


class TopicReader(Reader):
    """Everything published to a bus topic after the stream starts; unbounded. The instances
    of a stage share one subscription (its ``group``): each event reaches one of them. A
    topic keeps nothing to read again, so there is no position: an idle topic never holds up
    a checkpoint."""

    bounded = False
    position_free = True

    def __init__(self, topic: str, group: str | None = None) -> None:
        self.topic = topic
        self.name = f"from_topic:{topic}"
        self.group = group or uuid.uuid4().hex
        self._events: EventStream | None = None
        self._finishing: asyncio.Task[None] | None = None

    def check_parallelism(self, parallelism: int) -> None:
        """Instances share one subscription, so any number can read it."""

    def fresh(self, index: int, parallelism: int) -> TopicReader:
        return TopicReader(self.topic, self.group)

    def topics(self) -> tuple[str, ...]:
        return (self.topic,)

    async def open(self, ctx: StageContext) -> None:
        self._events = await ctx.subscribe(self.topic, group=self.group)

    async def read(self, max_records: int) -> Batch | None:
        assert self._events is not None, "open() first"
        return await self._events.get_batch(max_records)

    def stop_reading(self) -> None:
        """End the subscription: the stream keeps what it already took (a read in progress
        returns it), then reads return None; what the topic had queued but not yet handed
        to the stream is not taken, and publishers waiting for room are released."""
        if self._finishing is None and self._events is not None:
            self._finishing = asyncio.get_running_loop().create_task(
                self._events.finish(), name=f"{self.name}:finish")

    async def drain(self, max_records: int) -> Batch | None:
        self.stop_reading()
        batch = await self.read(max_records)
        if batch is None and self._finishing is not None:
            await self._finishing  # raises if ending the subscription failed
        return batch

    async def close(self) -> None:
        if self._finishing is not None and not self._finishing.done():
            await cancel_and_wait(self._finishing, f"{self.name}: ending the subscription")
        if self._events is not None:
            await self._events.aclose()


class ConnectorReader(Reader):
    """A ``Source`` connector. Read errors back off and retry; ``DeadLetter`` values that
    the source returns for records it could not decode go to the dead-letter topic.

    Optional source hooks: ``split(index, count)`` returns the source of one of ``count``
    instances (without it the source runs one instance); ``stop_reading()`` makes a read in
    progress return soon and later reads return what is buffered, then None (without it a
    drain waits for the read in progress); ``bounded = True`` says the source ends by itself.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name = f"from_source:{getattr(source, 'kind', '') or type(source).__name__}"
        # a server (a webhook) listens where the program that configured it runs
        self.driver_local = bool(getattr(source, "runs_in_driver", False))
        self.bounded = getattr(source, "bounded", False) is True
        self._ctx: StageContext | None = None
        self._started = False
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._held: Batch | None = None  # taken from the source, not yet handed to the stage

    def check_parallelism(self, parallelism: int) -> None:
        if parallelism != 1 and not callable(getattr(self.source, "split", None)):
            raise ConfigError(
                f"{self.name} cannot be split between {parallelism} instances: the source "
                "has no split(index, count) method, so keep its parallelism at 1",
                kind=getattr(self.source, "kind", None), field="parallelism")

    def fresh(self, index: int, parallelism: int) -> ConnectorReader:
        if parallelism == 1:
            return type(self)(self.source)
        return type(self)(self.source.split(index, parallelism))

    async def open(self, ctx: StageContext) -> None:
        self._ctx = ctx

    def stop_reading(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        stop = getattr(self.source, "stop_reading", None)
        if callable(stop):
            stop()

    async def read(self, max_records: int) -> Batch | None:
        if self._held is not None:  # a read was interrupted after taking these
            held, self._held = self._held, None
            return held
        events = await self._read_source(max_records)
        if events is None:
            return None
        failed = self.failed
        letters = [e.value for e in events if failed(e)]
        if not letters:
            return Batch.from_events(events)
        self._held = Batch.from_events([e for e in events if not failed(e)])
        assert self._ctx is not None
        await self._ctx.dead_letters(letters)
        held, self._held = self._held, None
        return held

    def failed(self, event: Any) -> bool:
        """Whether the source returned ``event`` for a record it could not decode: its value
        is a ``DeadLetter`` (a reader of sources whose records may be dead letters
        themselves, such as a dead-letter topic, tells them apart here)."""
        return isinstance(event.value, DeadLetter)

    async def _read_source(self, max_records: int) -> Sequence[Any] | None:
        failures = 0
        while True:
            try:
                if not self._started:
                    await self.source.start()
                    self._started = True
                events: Sequence[Any] | None = await self.source.read(max_records)
                return events
            except Exception as exc:
                if self._stopping:
                    log.warning("%s failed while draining (%s); stopping", self.name,
                                describe(exc))
                    return None
                failures += 1
                if not self._started and failures >= START_ATTEMPTS:
                    raise  # a source that never started (a wrong address) fails the stage
                wait = random.uniform(0, min(30.0, 0.1 * 2**failures))
                log.warning("%s failed (%s); retrying in %.2fs", self.name, describe(exc), wait)
                await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Back off, waking early for a drain."""
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._stopping:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def drain(self, max_records: int) -> Batch | None:
        """What the source buffered, when it can stop reading; else nothing more."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        if not self._started or not callable(getattr(self.source, "stop_reading", None)):
            return None
        return await self.read(max_records)

    def snapshot(self) -> Any:
        return self.source.snapshot()

    def restore(self, state: Any) -> None:
        self.source.restore(state)

    async def commit(self, position: Any) -> None:
        commit = getattr(self.source, "commit", None)
        if callable(commit):
            await commit(position)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.source.stop()
