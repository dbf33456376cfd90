"""PollingSource: interval, backoff with jitter on errors, never a dead source."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import eventray as er
from eventray.testing import Recorder


class TickConfig(er.ConnectorConfig):
    fail_first: int = 0


class Ticks(er.PollingSource[TickConfig]):
    """Polls a counter; the first ``fail_first`` polls raise, a poll may also hang."""

    kind = "ticks"
    config_type = TickConfig
    interval = 0.01
    backoff_initial = 0.01
    backoff_max = 0.05
    poll_timeout = 0.2

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.count = 0
        self.hang_once = False
        self.closed = False

    async def poll(self) -> Sequence[Any]:
        self.count += 1
        if self.count <= self.config.fail_first:
            raise ConnectionError(f"service down ({self.count})")
        if self.hang_once:
            self.hang_once = False
            await asyncio.sleep(60)
        return [self.count]

    async def close(self) -> None:
        self.closed = True


async def test_polls_at_its_interval() -> None:
    source = Ticks()
    loop = asyncio.get_running_loop()
    started = loop.time()
    values = []
    for _ in range(5):
        batch = await source.read(10)
        assert batch is not None
        values += [e.value for e in batch]
    assert values == [1, 2, 3, 4, 5]
    assert loop.time() - started >= 4 * 0.01 * 0.9


async def test_empty_reads_end_a_read_after_a_poll_that_brings_nothing() -> None:
    source = Ticks(fail_first=2)
    source.empty_reads = True
    assert await source.read(10) == [], "the failed poll ends the read: a checkpoint can go"
    assert await source.read(10) == []
    batch = await source.read(10)
    assert batch is not None and [e.value for e in batch] == [3]
    source.stop_reading()
    assert await source.read(10) is None


async def test_failures_back_off_and_recover() -> None:
    source = Ticks(fail_first=4)
    batch = await asyncio.wait_for(source.read(10), 5)
    assert batch is not None and [e.value for e in batch] == [5]
    assert source.failures == 4 and source.consecutive_failures == 0
    assert source.last_error == "ConnectionError: service down (4)"


async def test_a_hanging_poll_times_out_and_is_retried() -> None:
    source = Ticks()
    source.hang_once = True
    batch = await asyncio.wait_for(source.read(10), 5)
    assert batch is not None and [e.value for e in batch] == [2]
    assert source.last_error == "TimeoutError"


def test_backoff_is_capped_and_jittered() -> None:
    source = Ticks()
    waits = [source.backoff(n) for n in range(1, 30) for _ in range(20)]
    assert all(0 <= w <= source.backoff_max for w in waits)
    assert len(set(waits)) > 100, "jitter spreads the retries"


async def test_polling_source_topic_survives_outages_and_stops_cleanly() -> None:
    source = Ticks(fail_first=3)
    async with er.connect("memory") as bus:
        received = Recorder()
        bus.topic("ticks", source=source) >> received
        assert await received.wait_for(3) == [4, 5, 6]
    assert source.closed, "closing the bus stops the source"
