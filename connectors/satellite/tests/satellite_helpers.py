"""Helpers the satellite tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eventray import Event
from eventray_satellite import SatelliteSource
from eventray_satellite.testing import HiveSimulator


def source_for(hive: HiveSimulator, **fields: Any) -> SatelliteSource:
    """A satellite-source polling ``hive`` fast, backing off briefly."""
    source = SatelliteSource(base_url=hive.url, username=hive.username,
                             password=hive.password, **{"period": 10, **fields})
    source.backoff_initial = source.backoff_max = 0.02
    return source


async def read_values(source: SatelliteSource, count: int) -> list[Any]:
    """Read until ``count`` values came (reads that find nothing new poll again)."""
    values: list[Any] = []
    while len(values) < count:
        batch = await source.read(100)
        assert batch is not None
        values += [event.value for event in batch]
    return values


def ids(events: list[Any]) -> list[int]:
    return [e.value["packet_id"] if isinstance(e, Event) else e["packet_id"] for e in events]


async def until(condition: Callable[[], Any], timeout: float = 20.0,  # noqa: ASYNC109
                what: str = "the condition") -> None:
    """Wait until ``condition()`` is true, checking every 10 ms."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (a condition of anything, polled)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout}s") from None
