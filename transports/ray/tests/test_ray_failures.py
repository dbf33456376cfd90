"""Ray failing under eventray reaches the user as an eventray error, with Ray's exception as
the cause; and a subscriber is dropped only when its process is gone, never for being slow."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import ray

import eventray as er
from eventray.spi import Batch
from eventray.testing import Recorder
from eventray_ray._topics import PullStream

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("ray", namespace=f"ray-fail-{uuid.uuid4().hex[:8]}",
                          queue_batches=1, queue_size=1) as connected:
        yield connected


def namespace_of(bus: er.Bus) -> str:
    return str(bus.transport.options.namespace)  # type: ignore[attr-defined]


async def kill_topic_actor(bus: er.Bus, topic: str) -> None:
    handle = await asyncio.to_thread(ray.get_actor, f"topic:{topic}",
                                     namespace=namespace_of(bus))
    await asyncio.to_thread(ray.kill, handle, no_restart=True)
    for _ in range(200):  # ray.kill returns at once: wait until the actor is really gone
        try:
            await handle.creator.remote()
        except ray.exceptions.RayActorError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"topic actor {topic!r} still answers after ray.kill")


async def test_a_dead_topic_actor_under_a_subscriber_is_an_error() -> None:
    bus = er.connect("ray", namespace=f"ray-fail-{uuid.uuid4().hex[:8]}")
    try:
        received = Recorder()
        topic = bus.topic("dies")
        topic >> received
        topic << "before"
        await topic.flush()
        assert received.values == ["before"]
        await kill_topic_actor(bus, "dies")
        with pytest.raises(er.TransportError) as raised:
            await asyncio.wait_for(topic.flush(), 30)
        assert isinstance(raised.value.__cause__, ray.exceptions.RayError)
    finally:
        await bus.close(drain=False)


async def test_a_dead_topic_actor_under_from_topic_fails_the_job() -> None:
    bus = er.connect("ray", namespace=f"ray-fail-{uuid.uuid4().hex[:8]}")
    try:
        topic = bus.topic("feed")
        got: list[int] = []
        job = await bus.from_topic(topic).map(lambda v: v + 1).sink(got.append).run("fed")
        await topic.publish(1)
        await topic.flush()
        await kill_topic_actor(bus, "feed")
        with pytest.raises(er.StageFailed) as failed:
            await asyncio.wait_for(job.wait(), 30)
        assert "TransportError" in failed.value.error, "not a clean end of the stream"
    finally:
        await bus.close(drain=False)


async def test_a_cancelled_stage_task_fails_the_job(bus: er.Bus) -> None:
    """TaskCancelledError (like ObjectLostError, OwnerDiedError, OutOfMemoryError and
    NodeDiedError) is neither a RayTaskError nor a RayActorError: it must still fail the job."""
    topic = bus.topic("numbers")
    job = await bus.from_topic(topic).key_by(str).reduce(max).run("cancelled", parallelism=2)
    runs: dict[str, Any] = job._backend._runs  # type: ignore[attr-defined]
    ray.cancel(runs["cancelled.reduce.1"])
    with pytest.raises(er.StageFailed) as failed:
        await asyncio.wait_for(job.wait(), 30)
    assert failed.value.stage == "cancelled.reduce.1"
    assert isinstance(failed.value.__cause__, ray.exceptions.TaskCancelledError)


async def test_a_killed_stage_actor_is_the_stage_named_in_the_failure(bus: er.Bus) -> None:
    topic = bus.topic("kills")
    got: list[Any] = []
    job = await (bus.from_topic(topic).key_by(str).reduce(max).sink(got.append)
                 .run("killed", parallelism=2))
    await topic.publish(1)
    await topic.flush()
    handle = await asyncio.to_thread(ray.get_actor, "killed.reduce.0",
                                     namespace=namespace_of(bus))
    await asyncio.to_thread(ray.kill, handle, no_restart=True)
    with pytest.raises(er.StageFailed) as failed:
        await asyncio.wait_for(job.wait(), 30)
    assert failed.value.stage == "killed.reduce.0", failed.value
    assert isinstance(failed.value.__cause__, ray.exceptions.RayError)


async def test_pull_stream_honours_max_items_and_keeps_the_rest(bus: er.Bus) -> None:
    handle = await bus.transport.topic_actor("pulled")  # type: ignore[attr-defined]
    stream = await PullStream(handle, "test-puller", "puller").open()
    await handle.publish.remote(Batch(list(range(10))))  # one batch of ten
    sizes, values = [], []
    while len(values) < 10:
        batch = await asyncio.wait_for(stream.get_batch(3), 30)
        assert batch is not None
        sizes.append(len(batch))
        values += batch.values
    assert sizes == [3, 3, 3, 1]
    assert values == list(range(10))
    await stream.aclose()


async def test_a_slow_subscriber_is_kept_and_gets_everything(bus: er.Bus) -> None:
    """Once, a subscriber that kept its (full) queue waiting for 60 s was dropped, and its
    next pull read as the end of the stream; a live subscriber is now never dropped, however
    slow (a sink honouring a long Retry-After): it slows its publisher instead."""
    got: list[int] = []

    async def slow(value: int) -> None:
        if value == 0:
            await asyncio.sleep(1.5)  # longer than the old threshold, scaled down to 1 s
        got.append(value)

    topic = bus.topic("slow")
    topic >> slow
    await topic.flush()
    handle = await bus.transport.topic_actor("slow")  # type: ignore[attr-defined]
    # one batch per call, in order, so the queues fill up behind the subscriber
    calls = [handle.publish.remote(Batch([i]), "test", i) for i in range(8)]
    await asyncio.wait_for(asyncio.gather(*calls), 60)
    await asyncio.wait_for(topic.flush(), 60)
    assert got == list(range(8))
    stats = await handle.stats.remote()
    assert len(stats["subscriptions"]) == 1, "still subscribed"


STUCK_SUBSCRIBER = """
import asyncio, sys
import eventray as er

async def main():
    async with er.connect("ray", namespace=sys.argv[1], queue_size=1) as bus:
        topic = bus.topic("stuck")
        topic >> (lambda value: asyncio.Event().wait())  # never returns
        await topic.flush()
        print("subscribed", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_subscriber_whose_process_died_is_removed(bus: er.Bus) -> None:
    namespace = namespace_of(bus)
    topic = bus.topic("stuck")
    await topic.flush()  # the topic actor exists, with this bus's small queues
    child = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", textwrap.dedent(STUCK_SUBSCRIBER), namespace],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        assert line.strip() == "subscribed"
        for i in range(4):  # more than the subscriber and the queues take: publish blocks
            topic << i
        child.kill()
        await asyncio.to_thread(child.wait, 30)
        for i in range(4, 10):
            await asyncio.wait_for(topic.publish(i), 30)  # released once it is gone
        await asyncio.wait_for(topic.flush(), 30)
    finally:
        if child.poll() is None:
            child.kill()
            await asyncio.to_thread(child.wait, 30)
        if child.stdout is not None:
            child.stdout.close()
    handle = await bus.transport.topic_actor("stuck")  # type: ignore[attr-defined]
    assert (await handle.stats.remote())["subscriptions"] == {}


async def test_a_second_job_of_a_running_jobs_name_is_a_clear_error(bus: er.Bus) -> None:
    topic = bus.topic("twice")
    got: list[int] = []
    first = await bus.from_topic(topic).key_by(str).reduce(max).sink(got.append).run("twice")
    async with er.connect("ray", namespace=namespace_of(bus)) as other:  # another program
        with pytest.raises(er.ConfigError, match="'twice' is already running"):
            await other.from_topic(other.topic("twice")).key_by(str).reduce(max).run("twice")
    await topic.publish(1)
    await topic.flush()
    await first.stop(drain=True)
    assert got == [1], "the running job was left alone"
