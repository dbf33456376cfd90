"""ray-job-source: a real job's status changes and log lines as events on a topic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_rayjobs import JobClient, RayJobSource
from eventray_rayjobs.testing import RayJobCluster

pytestmark = pytest.mark.timeout(120)


def lines_and_statuses(values: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    return ([v["line"] for v in values if v["type"] == "log"],
            [v["status"] for v in values if v["type"] == "status"])


async def test_the_job_source_feeds_a_topic_until_the_job_ends(
        cluster: RayJobCluster, workdir: Path) -> None:
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        job = await jobs.submit("python job.py", params={"lines": 3}, working_dir=workdir)
    config = {"kind": "ray-job-source", "address": cluster.address, "submission_id": job.id,
              "token": cluster.token, "poll_interval": 0.2}
    async with er.connect("memory") as bus:
        received = Recorder()
        bus.topic("job", source=config) >> received
        # the terminal status is the last event
        while not received.values or received.values[-1].get("status") != "SUCCEEDED":
            await received.wait_for(len(received.values) + 1, timeout=30)
    values = received.values
    assert {v["submission_id"] for v in values} == {job.id}
    lines, statuses = lines_and_statuses(values)
    assert [line for line in lines if line.startswith("line ")] == ["line 0", "line 1", "line 2"]
    assert statuses[-1] == "SUCCEEDED"
    assert "RUNNING" in statuses
    assert len(statuses) == len(set(statuses)), "a status is sent when it changes"

    # restored from a checkpoint, it sends only what it had not delivered
    first = RayJobSource(config)
    batch = await first.read(3)
    assert batch is not None and len(batch) == 3
    state = first.snapshot()
    await first.stop()
    resumed = RayJobSource(config)
    resumed.restore(state)
    rest: list[er.Event] = []
    while (more := await resumed.read(100)) is not None:
        rest += more
    await resumed.stop()
    assert [e.value for e in batch] + [e.value for e in rest] == \
        [v for v in values if v["type"] == "log" or v["status"] == "SUCCEEDED"]


async def test_a_bad_config_or_unknown_job_is_a_clear_error(cluster: RayJobCluster) -> None:
    with pytest.raises(er.ConfigError, match="ray-job-source: field 'submission_id'"):
        er.connector("ray-job-source", address=cluster.address)
    with pytest.raises(er.ConfigError, match=r"ray-job-source: field 'address'.*Ray client"):
        er.connector("ray-job-source", address="ray://x:10001", submission_id="x")
    with pytest.raises(er.ConfigError, match="field 'poll_interval'"):
        er.connector("ray-job-source", submission_id="x", poll_interval=0)
    source = RayJobSource(address=cluster.address, submission_id="nope", token=cluster.token)
    with pytest.raises(er.ConnectorError, match="no Ray job 'nope'"):
        await source.start()
    await source.stop()


async def test_draining_a_stream_of_a_silent_job_ends_at_once(cluster: RayJobCluster) -> None:
    async with JobClient(cluster.address, token=cluster.token) as jobs:
        job = await jobs.submit("python -c 'import time; print(\"started\", flush=True); "
                                "time.sleep(60)'")
        try:
            config = {"kind": "ray-job-source", "address": cluster.address,
                      "submission_id": job.id, "token": cluster.token, "poll_interval": 0.2}
            async with er.connect("memory") as bus:
                received = Recorder()
                stream = await bus.from_source(config).sink(received).run("follow")
                await received.wait_for(1, timeout=60)  # following the (now silent) job
                await asyncio.wait_for(stream.stop(drain=True), 10)
        finally:
            await job.stop()
