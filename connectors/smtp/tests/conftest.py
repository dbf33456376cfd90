"""Fixtures of the SMTP tests: a memory bus, and TLS files from a throwaway CA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import eventray as er


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate for 127.0.0.1 and the CA that clients trust it through."""

    certfile: str
    keyfile: str
    cafile: str


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder: Path = tmp_path_factory.mktemp("tls")
    files = TlsFiles(str(folder / "cert.pem"), str(folder / "key.pem"), str(folder / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(files.certfile)
    cert.private_key_pem.write_to_path(files.keyfile)
    ca.cert_pem.write_to_path(files.cafile)
    return files


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("memory") as connected:
        yield connected
