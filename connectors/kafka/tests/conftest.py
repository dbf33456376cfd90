"""The Kafka plugin's fixtures: one broker for the session, a fresh topic name per test."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# the tests import kafka_helpers beside them (with --import-mode=importlib this folder is no
# package: a tests/__init__.py here would clash with the root tests package)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"
