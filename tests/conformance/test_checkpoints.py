"""Checkpoints on every transport: a drain takes a final checkpoint that a resumed run
continues from exactly (reduce, windows, user operators), sinks flush at checkpoints, sources
commit only what a durable checkpoint holds, and bad settings fail at ``run()``."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventray as er
from eventray.testing import ListSource, Recorder


async def _publish(bus: er.Bus, topic: str, values: list[Any]) -> None:
    for value in values:
        await bus.topic(topic).publish(value)
    await asyncio.wait_for(bus.topic(topic).flush(), 10)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_drain_checkpoints_and_resume_continues_the_running_sums(bus: er.Bus) -> None:
    store = er.MemoryStore()
    out = Recorder()

    async def run(resume: bool) -> er.Job:
        return await (bus.from_topic("numbers").map(lambda v: (v % 2, v))
                      .key_by(lambda kv: kv[0]).reduce(lambda a, b: (a[0], a[1] + b[1]))
                      .sink(out)
                      .run("sums", checkpoint_store=store, resume=resume))

    job = await run(resume=False)
    await _publish(bus, "numbers", list(range(100)))
    await out.wait_for(100)
    await job.stop(drain=True)
    first = await store.latest("sums")
    assert first is not None  # the drain's final checkpoint
    job = await run(resume=True)
    await _publish(bus, "numbers", list(range(100, 200)))
    await out.wait_for(200)
    await job.stop(drain=True)
    last = dict(out.values)
    assert last == {0: sum(range(0, 200, 2)), 1: sum(range(1, 200, 2))}  # went on from run 1
    assert len(out.values) == 200  # nothing was applied twice
    latest = await store.latest("sums")
    assert latest is not None and latest.id > first.id


class Counting:
    """A user operator keeping a count, saved through snapshot()/restore()."""

    def __init__(self) -> None:
        self.count = 0

    def process(self, batch: list[er.Event]) -> list[er.Event]:
        out = []
        for event in batch:
            self.count += 1
            out.append(event.replace_value((event.value, self.count)))
        return out

    def snapshot(self) -> int:
        return self.count

    def restore(self, state: int) -> None:
        self.count = state


async def test_a_stateful_operator_is_restored_through_snapshot_and_restore(
    bus: er.Bus,
) -> None:
    store = er.MemoryStore()
    out = Recorder()
    for resume, values in ((False, ["a", "b", "c"]), (True, ["d", "e"])):
        job = await (bus.from_topic("letters").apply(Counting()).sink(out)
                     .run("counting", checkpoint_store=store, resume=resume))
        await _publish(bus, "letters", values)
        await out.wait_for(len(out.values) + len(values))
        await job.stop(drain=True)
    assert out.values == [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]


async def test_open_windows_stay_in_the_final_checkpoint_and_close_after_resume(
    bus: er.Bus,
) -> None:
    store = er.MemoryStore()
    out = Recorder()

    async def run(resume: bool) -> er.Job:
        return await (bus.from_topic("clicks").with_timestamps(lambda v: v[1])
                      .key_by(lambda v: v[0]).window(er.Tumbling(seconds=10)).count()
                      .sink(out).run("clicks", checkpoint_store=store, resume=resume))

    job = await run(resume=False)
    await _publish(bus, "clicks", [("x", 1000), ("x", 2000), ("y", 3000)])
    await asyncio.sleep(0.2)
    await job.stop(drain=True)
    assert out.values == []  # a checkpointed drain does not flush open windows
    job = await run(resume=True)
    await _publish(bus, "clicks", [("x", 4000), ("x", 60_000)])  # the last one closes [0, 10s)
    await out.wait_for(1)
    await job.stop(drain=True)
    assert er.WindowResult("x", 0, 10_000, 3) in out.values
    assert er.WindowResult("y", 0, 10_000, 1) in out.values


async def test_metrics_say_which_checkpoint_is_complete(bus: er.Bus) -> None:
    job = await (bus.from_collection(range(20_000)).map(lambda v: v).sink(lambda v: None)
                 .run("metered", checkpoint_interval=0.01, checkpoint_store=er.MemoryStore()))
    await job.wait()
    for name, metrics in job.metrics().items():
        assert metrics["restarts"] == 0, name
        assert {"checkpoint_id", "checkpoint_completed", "checkpoint_time",
                "checkpoint_seconds"} <= metrics.keys()


async def test_a_job_of_another_shape_does_not_resume(bus: er.Bus) -> None:
    store = er.MemoryStore()
    job = await (bus.from_topic("shaped").key_by(lambda v: v).reduce(lambda a, b: a + b)
                 .sink(lambda v: None).run("shaped", checkpoint_store=store))
    await job.stop(drain=True)
    with pytest.raises(er.ConfigError, match="resume") as info:
        await (bus.from_topic("shaped").key_by(lambda v: v).reduce(lambda a, b: a + b)
               .sink(lambda v: None).run("shaped", parallelism=2, checkpoint_store=store,
                                         resume=True))
    assert info.value.field == "resume"


@pytest.mark.parametrize(("options", "field"), [
    ({"checkpoint_interval": 0}, "checkpoint_interval"),
    ({"checkpoint_interval": -1.0}, "checkpoint_interval"),
    ({"checkpoint_interval": "5"}, "checkpoint_interval"),
    ({"checkpoint_interval": True}, "checkpoint_interval"),
    ({"checkpoint_interval": float("nan")}, "checkpoint_interval"),
    ({"checkpoint_interval": float("inf")}, "checkpoint_interval"),
    ({"checkpoint_store": ""}, "checkpoint_store"),
    ({"checkpoint_store": 42}, "checkpoint_store"),
    ({"resume": "yes", "name": "x"}, "resume"),
    ({"resume": True}, "resume"),  # no name: which job's checkpoints?
])
async def test_bad_checkpoint_settings_fail_at_run(bus: er.Bus, options: dict[str, Any],
                                                   field: str) -> None:
    with pytest.raises(er.ConfigError) as info:
        await bus.from_values(1).sink(lambda v: None).run(**options)
    assert info.value.field == field


# The rest looks inside the process, so it runs on the memory transport.

class CommitRecorder(ListSource):
    """A list source that records each commit with the checkpoint the store held then."""

    def __init__(self, store: er.CheckpointStore, **fields: Any) -> None:
        super().__init__(**fields)
        self.store = store
        self.commits: list[tuple[int, int | None]] = []

    async def commit(self, state: Any) -> None:
        latest = await self.store.latest("committing")
        assert latest is not None, "committed before any checkpoint was durable"
        part = pickle.loads(latest.parts["committing.from_source:list-source+map+sink.0"])
        self.commits.append((state, part["reader"]))


@pytest.mark.parametrize("transport_url", ["memory"], indirect=True)
async def test_sources_commit_what_a_durable_checkpoint_holds(bus: er.Bus) -> None:
    store = er.MemoryStore()
    source = CommitRecorder(store, values=list(range(5000)))

    async def paced(v: int) -> int:
        await asyncio.sleep(0.0005)
        return v

    job = await (bus.from_source(source).map(paced).sink(lambda v: None)
                 .run("committing", batch_size=50, checkpoint_interval=0.02,
                      checkpoint_store=store))
    await job.wait()
    assert len(source.commits) >= 2
    assert all(committed == held for committed, held in source.commits)
    positions = [committed for committed, _ in source.commits]
    assert positions == sorted(positions) and positions[-1] <= 5000


class FlushCounter(er.BaseSink[er.ConnectorConfig]):
    kind = "flush-counter"

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.flushed_at: list[int] = []

    async def write(self, batch: Any) -> None:
        self.written += len(batch)

    async def flush(self) -> None:
        self.flushed_at.append(self.written)


@pytest.mark.parametrize("transport_url", ["memory"], indirect=True)
async def test_sinks_flush_at_every_checkpoint(bus: er.Bus) -> None:
    sink = FlushCounter()

    async def paced(v: int) -> int:
        if v % 100 == 0:
            await asyncio.sleep(0.01)
        return v

    job = await (bus.from_collection(range(3000)).map(paced).sink(sink)
                 .run("flushing", batch_size=100, checkpoint_interval=0.02,
                      checkpoint_store=er.MemoryStore()))
    await job.wait()
    completed = max(m["checkpoint_completed"] for m in job.metrics().values())
    assert completed >= 2
    assert len(sink.flushed_at) >= completed  # one per checkpoint, and one at the end
    assert sink.flushed_at[-1] == 3000


@pytest.mark.parametrize("transport_url", ["memory"], indirect=True)
async def test_the_default_store_is_a_directory_under_the_working_directory(
    bus: er.Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = await bus.from_topic("kept").sink(lambda v: None).run("kept",
                                                                checkpoint_interval=60)
    await job.stop(drain=True)
    saved = [p.name for p in (tmp_path / ".eventray" / "checkpoints" / "kept").iterdir()]
    assert any(name.isdigit() for name in saved), saved


async def test_an_idle_topic_does_not_hold_up_checkpoints(bus: er.Bus) -> None:
    job = await (bus.from_topic("quiet").sink(lambda v: None)
                 .run("quiet", checkpoint_interval=0.05, checkpoint_store=er.MemoryStore()))

    def completed() -> float:
        return max(m.get("checkpoint_completed", 0) for m in job.metrics().values())

    await _until(lambda: completed() >= 2, "two checkpoints of a stream with no traffic")
    await job.stop(drain=True)


class FullDisk(er.MemoryStore):
    """A store whose disk fills up after the first checkpoint."""

    async def write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        if checkpoint_id > 1:
            raise OSError(28, "No space left on device")
        await super().write_part(job, checkpoint_id, name, data)


@pytest.mark.parametrize("transport_url", ["memory"], indirect=True)
async def test_a_store_that_fails_is_said_and_the_final_checkpoint_fails_the_stop(
    bus: er.Bus, caplog: pytest.LogCaptureFixture
) -> None:
    store = FullDisk()
    job = await (bus.from_topic("full").sink(lambda v: None)
                 .run("full", checkpoint_interval=0.02, checkpoint_store=store))
    await _until(lambda: "could not be written" in caplog.text, "the store's error in the log")
    assert not job.done  # the stream goes on; the next checkpoint tries again
    with pytest.raises(er.StageFailed, match="final checkpoint could not be written"):
        await job.stop(drain=True)
    latest = await store.latest("full")
    assert latest is not None and latest.id == 1


async def test_closing_the_bus_takes_the_final_checkpoint(
    make_bus: Callable[[], er.Bus],
) -> None:
    store = er.MemoryStore()
    out = Recorder()
    for resume, values in ((False, [1, 2, 3]), (True, [4])):
        async with make_bus() as bus:
            await (bus.from_topic("closing").reduce(lambda a, b: a + b).sink(out)
                   .run("closing", checkpoint_store=store, resume=resume))
            await _publish(bus, "closing", values)
            await out.wait_for(len(out.values) + len(values))
        # leaving the block closed the bus: the job drained and took its final checkpoint
    assert out.values == [1, 3, 6, 10]


async def test_a_store_directory_that_cannot_be_made_fails_at_run(bus: er.Bus,
                                                                 tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    with pytest.raises(er.ConfigError, match="cannot create the directory") as info:
        await bus.from_values(1).sink(lambda v: None).run("x", checkpoint_store=a_file)
    assert info.value.field == "checkpoint_store"


async def test_a_bounded_job_that_ends_checkpoints_its_end(bus: er.Bus) -> None:
    """Resuming a job that ran to its end has nothing left to do."""
    store = er.MemoryStore()
    out: list[Any] = []
    for resume in (False, True):
        job = await (bus.from_collection(range(1000)).key_by(lambda v: v % 3)
                     .reduce(lambda a, b: a + b).sink(out.append)
                     .run("ended", checkpoint_store=store, resume=resume))
        await job.wait()
        assert len(out) == 1000  # the second run emitted nothing
    latest = await store.latest("ended")
    assert latest is not None


async def test_a_fresh_run_over_old_checkpoints_numbers_after_them(bus: er.Bus) -> None:
    store = er.MemoryStore()
    for resume in (False, False, True):  # run it again from scratch, then resume
        job = await (bus.from_values(1, 2, 3).map(lambda v: v * 2)
                     .key_by(lambda v: v % 2).reduce(lambda a, b: a + b)
                     .sink(Recorder()).run("again", checkpoint_store=store, resume=resume))
        await job.wait()  # a bounded job writes its end as its last checkpoint
    latest = await store.latest("again")
    assert latest is not None and latest.id >= 3  # each run went on after the last one
