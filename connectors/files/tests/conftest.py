"""The files plugin's fixtures: one S3 server (moto) for the session, a fresh bucket per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_files.testing import S3Server

# the tests import files_helpers beside them (with --import-mode=importlib this folder is no
# package: a tests/__init__.py here would clash with the root tests package)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 for the whole session."""
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A bucket no other test uses."""
    return s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
