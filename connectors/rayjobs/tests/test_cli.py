"""`eventray job ...` as a user runs it: a subprocess against the real cluster."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from pathlib import Path

import pytest

from eventray_files.testing import S3Server
from eventray_rayjobs import JobClient, JobStatus
from eventray_rayjobs.testing import RayJobCluster

pytestmark = pytest.mark.timeout(150)

EVENTRAY = [sys.executable, "-m", "eventray._cli"]


def environment(cluster: RayJobCluster, s3: S3Server | None = None) -> dict[str, str]:
    env = {**os.environ, "EVENTRAY_JOBS_ADDRESS": cluster.address}
    env["RAY_AUTH_TOKEN"] = cluster.token or ""
    env.pop("RAY_ADDRESS", None)
    if s3 is not None:  # where --upload-logs writes: AWS's usual variables
        env.update(AWS_ENDPOINT_URL=s3.endpoint_url, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    return env


async def eventray(cluster: RayJobCluster, *args: str,
                   s3: S3Server | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *EVENTRAY, "job", *args, env=environment(cluster, s3),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def on_a_terminal(cluster: RayJobCluster, *args: str) -> tuple[int, str]:
    """``eventray job ...`` with its stdout on a pseudo-terminal: exit code and output."""
    main, child = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *EVENTRAY, "job", *args, env=environment(cluster), stdout=child,
            stderr=asyncio.subprocess.DEVNULL)
        os.close(child)
        output = bytearray()
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, main, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        os.close(main)
    return code, output.decode()


async def test_submit_follow_status_logs_list_stop(cluster: RayJobCluster, workdir: Path,
                                                   s3: S3Server) -> None:
    script = str(workdir / "job.py")
    ok, failed, long, missing, bad_param, no_script = await asyncio.gather(
        eventray(cluster, "submit", script, "-k", "who=a b, c", "lines=2", "--follow",
                 "--upload-logs", "s3://logs/cli", s3=s3),
        on_a_terminal(cluster, "submit", script, "-k", "exit=5", "lines=1", "--follow"),
        eventray(cluster, "submit", script, "-k", "sleep=120", "--submission-id", "cli-long"),
        eventray(cluster, "status", "no-such-job"),
        eventray(cluster, "submit", script, "-k", "novalue"),
        eventray(cluster, "submit", str(workdir / "nope.py")))

    code, out, err = ok
    assert code == 0, err
    job_id, *log = out.splitlines()
    mine = [line for line in log if line.startswith(("PARAMS ", "DATA ", "line "))]
    assert json.loads(mine[0].removeprefix("PARAMS ")) == {"who": "a b, c", "lines": "2"}
    assert mine[1:] == ["DATA from the working dir", "line 0", "line 1"]
    assert f"[{job_id}] SUCCEEDED" in err.splitlines(), "status changes as plain lines"
    assert f"{job_id} SUCCEEDED (log: s3://logs/cli/{job_id}.log)" in err.splitlines()
    assert s3.objects("logs", "cli/")[f"cli/{job_id}.log"].decode().splitlines() == log

    code, text = failed
    assert code == 1, text
    assert "\r\x1b[K" in text, "on a terminal the status line is redrawn in place"
    assert "FAILED" in text and "line 0" in text

    assert missing[0] == 4 and "no Ray job 'no-such-job'" in missing[2]
    assert bad_param[0] == 2 and "expected KEY=VALUE, got 'novalue'" in bad_param[2]
    assert no_script[0] == 2 and "no such file" in no_script[2]

    code, out, err = long
    assert (code, out) == (0, "cli-long\n"), err
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        while await jobs.job("cli-long").status() is JobStatus.PENDING:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    status, stop, listing, table, logs = await asyncio.gather(
        eventray(cluster, "status", "cli-long"), eventray(cluster, "stop", "cli-long"),
        eventray(cluster, "list", "--json"), eventray(cluster, "list"),
        eventray(cluster, "logs", job_id))
    assert status[0] == 0 and status[1].startswith("cli-long  RUNNING")
    assert stop[:2] == (0, "cli-long: stopping\n")
    assert listing[0] == 0
    assert {job["submission_id"]: job["status"] for job in json.loads(listing[1])}[job_id] \
        == "SUCCEEDED"
    assert any(line.startswith(f"{job_id}  SUCCEEDED  python job.py -k")
               for line in table[1].splitlines())
    assert logs[1].splitlines() == log
    code, out, err = await eventray(cluster, "logs", "cli-long", "--follow")
    assert code == 3, "a stopped job's follower exits 3"
    assert "cli-long STOPPED" in err
