"""Fixtures every test directory shares (tests/, transports/*/tests, connectors/*/tests)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

# Before anything imports Ray: every process of the test Ray binds to 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session, on 127.0.0.1, stopped at the end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def kafka() -> Iterator[Any]:
    """A Kafka-protocol broker on 127.0.0.1 for the whole session (Tansu, or the one
    ``EVENTRAY_TEST_KAFKA`` names), stopped at the end."""
    testing = pytest.importorskip("eventray_kafka.testing")
    with testing.KafkaBroker() as broker:
        yield broker
