"""The Kafka plugin's fixtures: one broker for the session, a fresh topic name per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_kafka.testing import KafkaBroker

# the tests import kafka_helpers beside them (with --import-mode=importlib this folder is no
# package: a tests/__init__.py here would clash with the root tests package)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """A Tansu broker on 127.0.0.1 for the whole session (or ``EVENTRAY_TEST_KAFKA``)."""
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"
