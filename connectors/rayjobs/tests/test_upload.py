"""upload_logs_to: a job's full log written to object storage (moto's S3 on 127.0.0.1)."""

from __future__ import annotations

import asyncio

import pytest

from eventray_files.testing import S3Server
from eventray_rayjobs import JobClient, JobStatus, LogUploadError
from eventray_rayjobs.testing import RayJobCluster

pytestmark = pytest.mark.timeout(120)


async def test_the_log_is_uploaded_when_the_job_ends(cluster: RayJobCluster,
                                                     s3: S3Server) -> None:
    async with JobClient(cluster.address, token=cluster.token,
                         storage_options=s3.options) as jobs:
        job, lost = await asyncio.gather(
            jobs.submit("echo first line; echo 'second, line'",
                        upload_logs_to="s3://logs/ray-jobs"),
            jobs.submit("echo nowhere", upload_logs_to="s3://no-such-bucket/x"))

        async def uploaded() -> None:
            # a follower that reaches the end uploads too: the same object, once per handle
            follower = await jobs.get(job.id)
            assert follower.upload_logs_to == "s3://logs/ray-jobs"
            lines = [line async for line in follower.logs(follow=True)]
            info = await job.wait(poll_interval=0.2)
            assert info.status is JobStatus.SUCCEEDED
            assert job.log_url == follower.log_url == f"s3://logs/ray-jobs/{job.id}.log"
            stored = s3.objects("logs", prefix="ray-jobs/")
            assert list(stored) == [f"ray-jobs/{job.id}.log"]
            text = stored[f"ray-jobs/{job.id}.log"].decode()
            assert text.splitlines() == lines
            assert "first line" in lines and "second, line" in lines

        async def failed_upload() -> None:
            with pytest.raises(LogUploadError, match="no-such-bucket") as caught:
                await lost.wait(poll_interval=0.2)
            assert caught.value.submission_id == lost.id
            assert caught.value.__cause__ is not None
            assert await lost.status() is JobStatus.SUCCEEDED, "the job itself went fine"

        await asyncio.gather(uploaded(), failed_upload())
