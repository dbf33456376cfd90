"""Failover of one stage on Ray: a stage actor that dies is restarted and restored from the
job's latest complete checkpoint, the instances sending to it send again what they sent
since, and what follows it drops what it already has. The other stages keep running (their
restart counts stay 0), keyed state is exact and sinks see every record at least once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import ray

import eventray as er
from eventray.testing import ListSource

pytestmark = pytest.mark.usefixtures("ray_session")

N = 60_000
KEYS = 7
EXPECTED = {k: sum(range(k, N, KEYS)) for k in range(KEYS)}


async def paced(x: int) -> int:
    if x % 200 == 0:
        await asyncio.sleep(0.01)  # about 3 s in all: time to kill a stage mid-stream
    return x


async def _run_and_kill(victim: str, *, interval: float = 0.3,
                        store: er.CheckpointStore | None = None) -> tuple[dict[int, int],
                                                                          er.Job, int]:
    """Sum per key of 0..N-1 on a keyed stage, killing the stage actor ``victim`` once a
    checkpoint is complete; the last sum per key the sink saw, the job, and the records
    the sink took."""
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    last: dict[int, int] = {}
    seen = 0

    def sink(kv: tuple[int, int]) -> None:
        nonlocal seen
        seen += 1
        last[kv[0]] = kv[1]

    async with er.connect("ray", namespace=namespace) as bus:
        job = await (
            bus.from_source(ListSource(values=list(range(N)))).map(paced)
            .map(lambda x: (x % KEYS, x)).key_by(lambda kv: kv[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(sink)
            .run("failover", parallelism=2, checkpoint_interval=interval,
                 checkpoint_store=store or er.MemoryStore())
        )
        for _ in range(200):
            if min(m.get("checkpoint_completed", 0) for m in job.metrics().values()) >= 1:
                break
            await asyncio.sleep(0.05)
        assert not job.done, "the stream ended before the test could kill a stage"
        ray.kill(ray.get_actor(f"failover.{victim}", namespace=namespace), no_restart=False)
        await asyncio.wait_for(job.wait(), 60)
        return last, job, seen


def _restarts(job: er.Job) -> dict[str, float]:
    return {name.split(".", 1)[1]: m["restarts"] for name, m in job.metrics().items()}


async def test_a_killed_keyed_stage_is_restored_alone_with_exact_sums() -> None:
    last, job, seen = await _run_and_kill("reduce.1")
    assert last == EXPECTED
    assert _restarts(job) == {"from_source:list-source+map+map+key_by.0": 0, "reduce.0": 0,
                              "reduce.1": 1, "sink.0": 0}
    assert seen >= N  # at least once: what reduce.1 emitted since the checkpoint came again


async def test_a_killed_source_stage_reads_again_and_nothing_is_applied_twice() -> None:
    last, job, seen = await _run_and_kill("from_source:list-source+map+map+key_by.0")
    assert last == EXPECTED
    assert _restarts(job)["from_source:list-source+map+map+key_by.0"] == 1
    assert seen == N  # the keyed stage dropped every record it already had


class SlowFlushSink(er.BaseSink[er.ConnectorConfig]):
    """A sink whose flush (at every checkpoint) takes a while: checkpoints are in flight
    most of the time."""

    kind = "slow-flush-sink"

    async def write(self, batch: Any) -> None:
        return None

    async def flush(self) -> None:
        await asyncio.sleep(0.2)


async def test_a_stage_killed_during_a_checkpoint_is_restored() -> None:
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    last: dict[int, int] = {}
    async with er.connect("ray", namespace=namespace) as bus:
        job = await (
            bus.from_source(ListSource(values=list(range(N)))).map(paced)
            .map(lambda x: (x % KEYS, x)).key_by(lambda kv: kv[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(SlowFlushSink())
            .sink(lambda kv: last.__setitem__(kv[0], kv[1]))
            .run("failover", parallelism=2, checkpoint_interval=0.05,
                 checkpoint_store=er.MemoryStore())
        )
        coordinator: Any = job._backend.coordinator  # type: ignore[attr-defined]
        for _ in range(400):
            if coordinator.last_id >= 1 and coordinator._current is not None:
                break
            await asyncio.sleep(0.01)
        in_flight = coordinator._current
        assert in_flight is not None
        ray.kill(ray.get_actor("failover.reduce+sink:slow-flush-sink.0", namespace=namespace),
                 no_restart=False)
        await asyncio.wait_for(job.wait(), 60)
    assert last == EXPECTED
    assert coordinator.last_id > in_flight  # checkpoints went on after the restore


@pytest.mark.parametrize("field", ["replay_batches", "max_restarts"])
def test_bad_failover_options_fail_at_connect(field: str) -> None:
    with pytest.raises(er.ConfigError) as info:
        er.connect("ray", **{field: 0})
    assert info.value.field == field


async def paced_long(x: int) -> int:
    if x % 200 == 0:
        await asyncio.sleep(0.05)  # about 15 s in all: the job outlives two restores, even
    return x  # on a loaded machine (it fails at the second death, long before its end)


async def test_a_stage_that_dies_past_max_restarts_fails_the_job() -> None:
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    async with er.connect("ray", namespace=namespace, max_restarts=1) as bus:
        job = await (
            bus.from_source(ListSource(values=list(range(N)))).map(paced_long)
            .map(lambda x: (x % KEYS, x)).key_by(lambda kv: kv[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(lambda kv: None)
            .run("failover", parallelism=2, checkpoint_interval=0.2,
                 checkpoint_store=er.MemoryStore())
        )
        for restarts in (1, 2):
            for _ in range(1500):
                if job.metrics().get("failover.reduce.0", {}).get("restarts") == restarts - 1:
                    break
                await asyncio.sleep(0.02)
            assert not job.done, "the job ended before its stage could be killed again"
            ray.kill(ray.get_actor("failover.reduce.0", namespace=namespace),
                     no_restart=False)
        with pytest.raises(er.StageFailed, match=r"failover\.reduce\.0"):
            await asyncio.wait_for(job.wait(), 60)


async def paced_both(x: int) -> int:
    if x % 200 < 2:
        await asyncio.sleep(0.01)  # both halves of a split source take about 3 s
    return x


async def test_a_restored_stage_with_two_inputs_replays_them_as_it_took_them() -> None:
    """The killed keyed stage takes from two source instances (even and odd numbers, so their
    batches hold different keys), interleaved as they come; a keyed stage after it counts
    what it emits. Restored, it takes the replayed batches in the order it had taken them, so
    it emits again what it emitted before, and the stage after it drops exactly that: its
    counts are exact."""
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    keys = 6  # even numbers have even keys
    expected = {k: (len(range(k, N, keys)), sum(range(k, N, keys))) for k in range(keys)}
    last: dict[int, tuple[int, int]] = {}
    async with er.connect("ray", namespace=namespace) as bus:
        job = await (
            bus.from_source(ListSource(values=list(range(N)))).set_parallelism(2)
            .map(paced_both).map(lambda x: (x % keys, x)).key_by(lambda kv: kv[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1]), name="sums")
            .map(lambda kv: (kv[0], 1, kv[1])).key_by(lambda t: t[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1], max(a[2], b[2])), name="counts")
            .sink(lambda t: last.__setitem__(t[0], (t[1], t[2])))
            .run("failover", parallelism=2, checkpoint_interval=1.0, batch_size=500,
                 checkpoint_store=er.MemoryStore())
        )
        victim = "failover.sums+map+key_by.0"
        for _ in range(200):
            if min(m.get("checkpoint_completed", 0) for m in job.metrics().values()) >= 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # well into the next checkpoint's interval
        assert not job.done
        ray.kill(ray.get_actor(victim, namespace=namespace), no_restart=False)
        await asyncio.wait_for(job.wait(), 60)
        restarts = {n: m["restarts"] for n, m in job.metrics().items()}
    assert restarts[victim] == 1
    assert last == expected


async def test_full_replay_buffers_ask_for_checkpoints_and_never_deadlock() -> None:
    """Replay buffers of 8 batches and no checkpoint for a minute: the buffers filling up ask
    for the checkpoints that empty them, and the stream runs to its end."""
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    last: dict[int, int] = {}
    async with er.connect("ray", namespace=namespace, replay_batches=8) as bus:
        job = await (
            bus.from_source(ListSource(values=list(range(N)))).set_parallelism(2)
            .map(lambda x: (x % KEYS, x)).key_by(lambda kv: kv[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(lambda kv: last.__setitem__(*kv))
            .run("hurried", parallelism=2, batch_size=200, checkpoint_interval=60,
                 checkpoint_store=er.MemoryStore())
        )
        await asyncio.wait_for(job.wait(), 60)
        completed = max(m["checkpoint_completed"] for m in job.metrics().values())
    assert last == EXPECTED
    assert completed >= 2


async def test_a_job_resumes_after_a_run_in_which_a_stage_was_restored() -> None:
    """Channel state saved after a restore (its senders' epochs and replay generations)
    does not keep a resumed job's fresh senders out."""
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    store = er.MemoryStore()
    last: dict[int, int] = {}
    async with er.connect("ray", namespace=namespace) as bus:
        def stream(values: list[int]) -> er.Stream:
            return (bus.from_source(ListSource(values=values)).map(paced)
                    .map(lambda x: (x % KEYS, x)).key_by(lambda kv: kv[0])
                    .reduce(lambda a, b: (a[0], a[1] + b[1]))
                    .sink(lambda kv: last.__setitem__(*kv)))

        job = await stream(list(range(N))).run("resumed", parallelism=2,
                                               checkpoint_interval=0.3, checkpoint_store=store)
        for _ in range(200):
            if min(m.get("checkpoint_completed", 0) for m in job.metrics().values()) >= 1:
                break
            await asyncio.sleep(0.05)
        ray.kill(ray.get_actor("resumed.reduce.0", namespace=namespace), no_restart=False)
        await asyncio.wait_for(job.stop(drain=True), 60)
        job = await stream(list(range(N))).run("resumed", parallelism=2, resume=True,
                                               checkpoint_interval=0.3, checkpoint_store=store)
        await asyncio.wait_for(job.wait(), 60)
    assert last == EXPECTED


async def test_a_topic_stream_goes_on_while_one_of_its_instances_is_restored() -> None:
    """The instances of a from_topic stage share one subscription: one dying does not end it
    for the others, which go on taking what is published."""
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    got: list[int] = []
    survivor = "topical.from_topic:numbers+map.1"
    async with er.connect("ray", namespace=namespace) as bus:
        topic = bus.topic("numbers")
        job = await (bus.from_topic(topic).set_parallelism(2).map(lambda x: x)
                     .sink(got.append)
                     .run("topical", checkpoint_interval=0.2, checkpoint_store=er.MemoryStore()))
        for value in range(100):
            await topic.publish(value)
        await asyncio.wait_for(topic.flush(), 30)
        ray.kill(ray.get_actor("topical.from_topic:numbers+map.0", namespace=namespace),
                 no_restart=False)
        for _ in range(400):  # restored, and its death seen by the topic
            if job.metrics().get("topical.from_topic:numbers+map.0", {}).get("restarts"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # the survivor's metrics are polled every second
        before = job.metrics()[survivor]["records_in"]
        for value in range(1000, 1200):
            await topic.publish(value)
            await asyncio.sleep(0.002)
        await asyncio.wait_for(topic.flush(), 30)
        for _ in range(400):
            if sum(1 for v in got if v >= 1000) == 200:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)
        after = job.metrics()[survivor]["records_in"]
        await asyncio.wait_for(job.stop(drain=True), 60)
    assert sorted(v for v in got if v >= 1000) == list(range(1000, 1200))
    assert after > before  # the surviving instance still reads the topic
