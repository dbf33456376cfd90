"""One real Ray head with its job server for every test of this plugin, and a job script."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_files.testing import S3Server
from eventray_rayjobs.testing import RayJobCluster

TOKEN = "eventray-test-token"

# One script for every job the tests run: it prints its parameters (as ASCII JSON, whatever
# the cluster's locale) and a file of its working_dir, then does what its parameters say.
SCRIPT = '''
import json, sys, time
import eventray as er

params = er.job_params()
print("PARAMS " + json.dumps(params), flush=True)
print("DATA " + open("data.txt").read().strip(), flush=True)
for i in range(int(params.get("lines", "0"))):
    print(f"line {i}", flush=True)
time.sleep(float(params.get("sleep", "0")))
sys.exit(int(params.get("exit", "0")))
'''


@pytest.fixture(scope="session")
def cluster() -> Iterator[RayJobCluster]:
    """A Ray head on 127.0.0.1 requiring token ``TOKEN`` (stopped by PID at the end)."""
    with RayJobCluster(num_cpus=1, token=TOKEN) as cluster:
        yield cluster
        assert cluster.process is not None and cluster.process.poll() is None, \
            "the cluster died during the tests:\n" + cluster.output()
    assert cluster.leftover_pids() == []


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working_dir holding the job script ``job.py`` and ``data.txt``."""
    root = tmp_path_factory.mktemp("jobdir")
    (root / "job.py").write_text(SCRIPT)
    (root / "data.txt").write_text("from the working dir\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "junk.pyc").write_bytes(b"\0" * 10)
    return root


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 with a bucket ``logs``."""
    with S3Server() as server:
        server.create_bucket("logs")
        yield server
