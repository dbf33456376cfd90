"""Fixtures shared by the core and conformance tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

import eventray as er


def transports_under_test() -> list[str]:
    """Installed transports the conformance suite runs on (EVENTRAY_TEST_TRANSPORTS overrides)."""
    chosen = os.environ.get("EVENTRAY_TEST_TRANSPORTS")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    installed = er.registry.transports()
    # kafka runs only when asked (EVENTRAY_TEST_TRANSPORTS=kafka): a stop without drain on
    # it can leave an aiokafka connection behind (intermittent; see the closing notes)
    return [name for name in ("memory", "ray") if name in installed]


@pytest.fixture(params=transports_under_test())
def transport_url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    if url.startswith("ray"):
        request.getfixturevalue("ray_session")
    if url == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka').bootstrap_servers}"
    return url


def connect(url: str, **options: object) -> er.Bus:
    """``er.connect`` with per-test isolation: on Ray and Kafka, a namespace of the test's
    own (on Kafka also consumer groups that join fast, as the test broker needs)."""
    if url.startswith(("ray", "kafka")):
        options.setdefault("namespace", f"test-{uuid.uuid4().hex[:12]}")
    if url.startswith("kafka"):
        options.setdefault("session_timeout_ms", 3000)
        options.setdefault("heartbeat_interval_ms", 500)
        options.setdefault("request_timeout_ms", 5000)
    return er.connect(url, **options)


@pytest.fixture
def make_bus(transport_url: str) -> Callable[[], er.Bus]:
    """A factory of unopened buses on the transport under test, isolated like ``bus``."""
    return lambda: connect(transport_url)


@pytest.fixture
async def bus(transport_url: str) -> AsyncIterator[er.Bus]:
    before = asyncio.all_tasks()
    async with connect(transport_url) as connected:
        yield connected
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not current]
    assert not leaked, f"tasks left running after close: {leaked}"
