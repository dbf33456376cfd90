"""What a stream says about itself while it fails or drains: enough to act on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

import eventray as er
from eventray._runtime import runner


async def test_records_sent_to_dead_letters_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with er.connect("memory") as bus:
        with caplog.at_level(logging.WARNING, logger="eventray"):
            assert await bus.from_values(1, 0, 2).map(lambda v: 2 // v, name="halve").collect() \
                == [2, 1]
    logged = [r.getMessage() for r in caplog.records if ".halve failed" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "ZeroDivisionError" in logged[0] and "dead-letter" in logged[0]


class Blocking(er.BaseSource[er.ConnectorConfig]):
    """A source whose read blocks until released, with no stop_reading()."""

    kind = "blocking-source"
    config_type = er.ConnectorConfig

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def read(self, max_events: int) -> Sequence[er.Event] | None:
        await self.release.wait()
        return [er.Event("late")]


async def test_a_drain_stuck_on_a_read_says_why(caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SLOW_DRAIN_WARNING", 0.05)
    got: list[str] = []
    async with er.connect("memory") as bus:
        source = Blocking()
        job = await bus.from_source(source).sink(got.append).run("stuck-read")
        await asyncio.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="eventray"):
            stopping = asyncio.create_task(job.stop(drain=True))
            await asyncio.sleep(0.2)
            assert not stopping.done()
            source.release.set()
            await asyncio.wait_for(stopping, 10)
    assert got == ["late"], "the read in flight was delivered"
    assert any("define stop_reading()" in r.getMessage() for r in caplog.records)


def test_a_misspelled_kind_or_transport_gets_a_hint() -> None:
    with pytest.raises(er.UnknownKindError, match="did you mean 'http-source'"):
        er.connector("http-sorce", url="http://127.0.0.1:1")
    with pytest.raises(er.UnknownKindError, match="did you mean 'memory'"):
        er.connect("memroy")
