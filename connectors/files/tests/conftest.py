"""The files plugin's fixtures: one S3 server (moto) for the session, a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from eventray_files.testing import S3Server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 for the whole session."""
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A bucket no other test uses."""
    return s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
