"""Fixtures shared by the core and conformance tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

import eventray as er


def transports_under_test() -> list[str]:
    """Installed transports the conformance suite runs on (EVENTRAY_TEST_TRANSPORTS overrides)."""
    chosen = os.environ.get("EVENTRAY_TEST_TRANSPORTS")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    installed = er.registry.transports()
    return [name for name in ("memory", "ray") if name in installed]


@pytest.fixture(params=transports_under_test())
def transport_url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    if url.startswith("ray"):
        request.getfixturevalue("ray_session")
    return url


@pytest.fixture
async def bus(transport_url: str) -> AsyncIterator[er.Bus]:
    before = asyncio.all_tasks()
    async with er.connect(transport_url) as connected:
        yield connected
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not current]
    assert not leaked, f"tasks left running after close: {leaked}"
