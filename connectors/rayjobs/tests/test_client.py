"""JobClient against a real Ray head with its job server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import eventray as er
from eventray_files.testing import S3Server
from eventray_rayjobs import (
    Job,
    JobAuthError,
    JobClient,
    JobConflict,
    JobFailed,
    JobNotFound,
    JobServerError,
    JobServerUnreachable,
    JobStatus,
)
from eventray_rayjobs.testing import RayJobCluster, free_port

pytestmark = pytest.mark.timeout(120)

PARAMS = {"who": "a b, c", "expr": "x=1,y=2,", "quote": "it's", "uni": "größe ✓"}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def wait_running(job: Job) -> None:
    async with asyncio.timeout(60):
        while await job.status() is not JobStatus.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_er_job_client_is_the_plugins() -> None:
    assert er.JobClient is JobClient
    assert "JobClient" in dir(er)


async def test_submit_with_params_and_working_dir_then_follow_the_log(
        cluster: RayJobCluster, workdir: Path) -> None:
    async with er.JobClient(cluster.address, token=cluster.token) as jobs:
        job = await jobs.submit("python job.py", params={**PARAMS, "lines": 3},
                                working_dir=workdir, metadata={"team": "data"})
        assert job.id.startswith("raysubmit_")

        async def follow(handle: Job) -> list[str]:
            return [line async for line in handle.logs(follow=True, poll_interval=0.2)]

        # a second follower whose websocket breaks after its first message: it goes on by
        # polling from where the websocket stopped, losing and repeating nothing
        broken = jobs.job(job.id)
        real_tail = broken._tail

        async def first_message_only() -> AsyncIterator[str]:
            async for chunk in real_tail():
                yield chunk
                return

        broken._tail = first_message_only  # type: ignore[method-assign]
        lines, lines_after_a_break = await asyncio.gather(follow(job), follow(broken))
        assert lines_after_a_break == lines
        params_line = next(line for line in lines if line.startswith("PARAMS "))
        assert json.loads(params_line.removeprefix("PARAMS ")) == {**PARAMS, "lines": "3"}
        assert "DATA from the working dir" in lines
        assert [line for line in lines if line.startswith("line ")] == \
            ["line 0", "line 1", "line 2"]
        # logs(follow=True) ends when the job has ended
        info = await job.info()
        assert info.status is JobStatus.SUCCEEDED
        assert info.metadata["team"] == "data"
        assert (await job.wait(poll_interval=0.1)).status is JobStatus.SUCCEEDED
        assert [line async for line in job.logs()] == lines


async def test_failed_and_stopped_jobs(cluster: RayJobCluster, workdir: Path) -> None:
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        failing, long = await asyncio.gather(
            jobs.submit("python job.py", params={"exit": 3}, working_dir=workdir),
            jobs.submit("python job.py", params={"sleep": 120}, working_dir=workdir))

        async def fail() -> None:
            info = await failing.wait(poll_interval=0.2)
            assert info.status is JobStatus.FAILED
            assert info.driver_exit_code == 3
            with pytest.raises(JobFailed, match="FAILED") as caught:
                await failing.wait(poll_interval=0.2, check=True)
            assert caught.value.info.status is JobStatus.FAILED

        async def stop() -> None:
            await wait_running(long)
            assert await long.stop() is True
            info = await long.wait(poll_interval=0.2)
            assert info.status is JobStatus.STOPPED
            assert await long.stop() is False, "an ended job cannot be stopped again"

        await asyncio.gather(fail(), stop())


async def test_a_repeated_submission_id_returns_the_same_job(
        cluster: RayJobCluster, workdir: Path) -> None:
    submission_id = unique("idem")
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        racing = await asyncio.gather(*(
            jobs.submit("python job.py", params={"lines": 1}, working_dir=workdir,
                        submission_id=submission_id) for _ in range(3)))
        again = await jobs.submit("python job.py", params={"lines": 1}, working_dir=workdir,
                                  submission_id=submission_id)
        assert {job.id for job in [*racing, again]} == {submission_id}
        listed = [info for info in await jobs.list() if info.submission_id == submission_id]
        assert len(listed) == 1, "submitted once"
        await again.wait(poll_interval=0.2)
        assert [line async for line in again.logs()].count("line 0") == 1
        with pytest.raises(JobConflict, match="already names a job"):
            await jobs.submit("python other.py", submission_id=submission_id)
        # list and delete
        assert await jobs.delete(submission_id) is True
        assert submission_id not in {info.submission_id for info in await jobs.list()}
        with pytest.raises(JobNotFound):
            await jobs.info(submission_id)


async def test_errors_name_what_went_wrong(cluster: RayJobCluster) -> None:
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        missing = jobs.job("no-such-job")
        for call in (missing.info, missing.stop, missing.wait, missing.delete):
            with pytest.raises(JobNotFound, match="no Ray job 'no-such-job' at http://127") as e:
                await call()
            assert (e.value.status, e.value.submission_id) == (404, "no-such-job")
        with pytest.raises(JobNotFound):
            [line async for line in missing.logs()]
        with pytest.raises(JobNotFound):
            [line async for line in missing.logs(follow=True)]
        with pytest.raises(er.ConfigError, match="poll_interval"):
            await missing.wait(poll_interval="20")  # type: ignore[arg-type]
        for bad in (0, -1, math.nan, math.inf, True):
            with pytest.raises(er.ConfigError, match="must be a number of seconds above 0"):
                await missing.wait(poll_interval=bad)
        with pytest.raises(er.ConfigError, match=r"working_dir.*not a directory"):
            await jobs.submit("python job.py", working_dir="/no/such/dir")
        with pytest.raises(er.ConfigError, match=r"entrypoint_num_cpus.*must be a number >= 0"):
            await jobs.submit("python job.py", entrypoint_num_cpus=-1)
        with pytest.raises(er.ConfigError, match="upload_logs_to"):
            await jobs.submit("python job.py", upload_logs_to="http://not-s3")
    async with JobClient(cluster.address) as anonymous:
        with pytest.raises(JobAuthError, match="requires a token") as auth:
            await anonymous.list()
        assert auth.value.status == 401
    async with JobClient(cluster.address, token="wrong") as wrong:
        with pytest.raises(JobAuthError, match="refused the token"):
            await wrong.list()
    port = free_port()
    async with JobClient(f"127.0.0.1:{port}", timeout=5) as nowhere:
        with pytest.raises(JobServerUnreachable,
                           match=f"cannot reach the Ray job server at http://127.0.0.1:{port}"
                           ) as unreachable:
            await nowhere.submit("python job.py")
        assert isinstance(unreachable.value, er.TransportError)
    with pytest.raises(er.ConfigError, match="Ray client address"):
        JobClient("ray://127.0.0.1:10001")


async def test_an_address_that_is_no_job_server_is_named(s3: S3Server) -> None:
    # moto's S3 server: a real HTTP server on 127.0.0.1 that knows nothing of Ray jobs
    async with JobClient(s3.endpoint_url) as elsewhere:
        with pytest.raises(JobServerError, match=f"{s3.endpoint_url} has no Ray job server "
                           r"\(GET /api/jobs/: HTTP 404\)") as caught:
            await elsewhere.list()
        assert caught.value.status == 404


async def test_a_closed_client_refuses_requests(cluster: RayJobCluster) -> None:
    client = JobClient(cluster.address, token=cluster.token)
    assert isinstance(await client.version(), dict)
    await client.close()
    with pytest.raises(er.ClosedError):
        await client.list()
