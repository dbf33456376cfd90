"""The Kafka plugin's fixtures: one broker for the session, a fresh topic name per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from eventray_kafka.testing import KafkaBroker


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """A Tansu broker on 127.0.0.1 for the whole session (or ``EVENTRAY_TEST_KAFKA``)."""
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"
