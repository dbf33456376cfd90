"""Nothing lost, duplicated or stuck: reads that are never cancelled, drains behind the input,
a graceful close with running streams, source parallelism, and failures inside failure paths.
Runs on every transport."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventray as er
from eventray.testing import ListSource, QueueSource, Recorder


async def test_a_polled_message_is_never_dropped(bus: er.Bus) -> None:
    """A service that hands each message out once loses nothing to the stage's linger timer
    or to the drain: 127 messages polled 5 at a time all reach the sink, once."""
    got: list[int] = []
    source = QueueSource(values=list(range(127)), per_poll=5)
    job = await bus.from_source(source).map(lambda v: v).sink(got.append).run(linger=0.005)
    for _ in range(400):
        if len(got) >= 127:
            break
        await asyncio.sleep(0.025)
    await job.stop(drain=True)
    assert sorted(got) == list(range(127))
    assert len(got) == 127


async def test_a_drain_mid_poll_delivers_what_the_poll_took(bus: er.Bus) -> None:
    """Drain while messages are still being handed out, with a processing-time window firing:
    whatever the source took reaches the sink (each at most once), and the drain ends."""
    got: list[Any] = []
    source = QueueSource(values=list(range(5000)), per_poll=7)
    job = await (
        bus.from_source(source)
        .key_by(lambda v: v % 3)
        .window(er.Tumbling(seconds=0.02, time="processing"))
        .aggregate(list, lambda acc, v: [*acc, v])
        .sink(got.append)
        .run(linger=0.01)
    )
    await asyncio.sleep(0.3)
    await asyncio.wait_for(job.stop(drain=True), 30)
    values = [v for result in got for v in result.value]
    assert values, "the stream was running"
    assert len(values) == len(set(values)), "nothing twice"
    taken = sorted(values)
    assert taken == list(range(len(taken))), "what the source handed out, without a gap"


async def test_drain_of_a_stream_behind_its_input_ends_and_releases_publishers(
    bus: er.Bus,
) -> None:
    topic = bus.topic("behind")
    got: list[int] = []
    draining = False
    fifty = asyncio.Event()

    async def slow(value: int) -> None:
        if not draining:  # behind its input until the drain starts, then it keeps up
            await asyncio.sleep(0.002)
        got.append(value)
        if len(got) >= 50:
            fifty.set()

    job = await bus.from_topic(topic).sink(slow).run("behind", batch_size=10)

    async def publish_a_lot() -> None:
        for i in range(20_000):
            await topic.publish(i)

    publisher = asyncio.create_task(publish_a_lot())
    await asyncio.wait_for(fifty.wait(), 30)
    draining = True
    await asyncio.wait_for(job.stop(drain=True), 30)
    await asyncio.wait_for(publisher, 30)  # released: nobody waits on the stopped stream
    assert got == list(range(len(got))), "what the stream took, in order, once"


async def test_graceful_close_loses_nothing_published(make_bus: Callable[[], er.Bus]) -> None:
    bus = make_bus()
    results = Recorder()
    letters = Recorder()
    bus.topic("doubled") >> results
    bus.dead_letters >> letters
    inputs = bus.topic("numbers")

    def double_unless_seventh(value: int) -> int:
        if value % 7 == 0:
            raise ValueError("a seventh")
        return value * 2

    await bus.from_topic(inputs).map(double_unless_seventh).sink(bus.topic("doubled")).run(
        "doubling")
    for i in range(5000):
        await inputs.publish(i)
    await bus.close()
    assert sorted(results.values) == [i * 2 for i in range(5000) if i % 7]
    assert sorted(d.value for d in letters.values) == [i for i in range(5000) if i % 7 == 0]


async def test_a_job_failure_is_raised_by_stop_and_logged_once(
    bus: er.Bus, caplog: pytest.LogCaptureFixture
) -> None:
    topic = bus.topic("failing")

    def explode(value: int) -> int:
        raise RuntimeError(f"boom {value}")

    job = await bus.from_topic(topic).map(explode, on_error="fail").sink(print).run("failing")
    with caplog.at_level(logging.ERROR, logger="eventray"):
        await topic.publish(1)
        with pytest.raises(er.StageFailed, match="boom 1"):
            await asyncio.wait_for(job.wait(), 30)
        with pytest.raises(er.StageFailed, match="boom 1"):
            await job.stop()
    logged = [r for r in caplog.records if "boom 1" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]


@pytest.mark.parametrize("parallelism", [2, 3])
async def test_split_sources_read_each_record_once(
    bus: er.Bus, tmp_path: Path, parallelism: int
) -> None:
    values = list(range(50))
    collected = await bus.from_collection(values).set_parallelism(parallelism).collect()
    assert sorted(collected) == values
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"line {i}\n" for i in range(31)))
    lines = await bus.read_text_file(text).set_parallelism(parallelism).collect()
    assert sorted(lines) == sorted(f"line {i}" for i in range(31))
    source = ListSource(values=values)
    split = await bus.from_source(source).set_parallelism(parallelism).collect()
    assert sorted(split) == values


async def test_topic_source_instances_share_one_subscription(bus: er.Bus) -> None:
    topic = bus.topic("shared-input")
    got: list[int] = []
    job = await bus.from_topic(topic).set_parallelism(2).sink(got.append).run("sharing")
    for i in range(200):
        await topic.publish(i)
    await topic.flush()
    await job.stop(drain=True)
    assert sorted(got) == list(range(200))


async def test_unsplittable_sources_refuse_parallelism_at_run(bus: er.Bus) -> None:
    with pytest.raises(er.ConfigError, match="cannot be split") as refused:
        await bus.from_source(QueueSource(values=[1])).set_parallelism(2).run("nope")
    assert refused.value.field == "parallelism"
    with pytest.raises(er.ConfigError, match="lazy iterable"):
        await bus.from_collection(iter(range(3))).set_parallelism(2).collect()


async def test_an_unhashable_key_is_a_dead_letter_not_a_dead_job(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    values: list[Any] = [[1], "a", {"b": 2}, "a"]
    result = await (bus.from_collection(values).key_by(lambda v: v).map(lambda v: 1)
                    .reduce(lambda a, b: a + b).collect(parallelism=2))
    assert sorted(result) == [1, 2]
    await asyncio.wait_for(bus.dead_letters.flush(), 10)
    assert sorted(map(str, (d.value for d in letters.values))) == ["[1]", "{'b': 2}"]
    assert all("unhashable key (" in d.error for d in letters.values)


class ValuesNotEvents:
    """An operator that breaks the contract: it returns plain values."""

    def process(self, batch: list[er.Event]) -> list[Any]:
        return [event.value for event in batch]


async def test_an_operator_returning_values_is_dead_lettered_not_a_hang(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    out = Recorder()
    bus.topic("contract", operator=ValuesNotEvents()) >> out
    topic = bus.topic("contract")
    await topic.publish(1)
    await topic.publish(2)
    await asyncio.wait_for(topic.flush(), 10)
    await asyncio.wait_for(bus.dead_letters.flush(), 10)
    assert out.values == []
    assert [d.value for d in letters.values] == [1, 2]
    assert "OperatorError" in letters.values[0].error
    assert "ValuesNotEvents" in letters.values[0].error
    in_stream = await bus.from_values(3).apply(ValuesNotEvents()).collect()
    assert in_stream == []
    await asyncio.wait_for(bus.dead_letters.flush(), 10)
    assert [d.value for d in letters.values] == [1, 2, 3]


async def test_a_failing_failure_handler_does_not_kill_delivery(
    bus: er.Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber fails, and reporting the failure fails too (a dead-letter value that
    cannot be pickled on Ray, a broken handler on memory): delivery goes on and flush ends."""
    received = Recorder()
    topic = bus.topic("fragile")

    def picky(value: int) -> None:
        if value == 1:
            raise ValueError("one")
        received(value)

    subscription = topic.subscribe(picky)

    async def broken(failures: Any, stage: str) -> None:
        raise RuntimeError("the failure handler failed")

    subscription.spec.on_failures = broken
    with caplog.at_level(logging.ERROR, logger="eventray"):
        for i in range(3):
            await topic.publish(i)
        await asyncio.wait_for(topic.flush(), 10)
    assert received.values == [0, 2]


async def test_close_refuses_new_publishes_and_delivers_every_accepted_one(
    make_bus: Callable[[], er.Bus],
) -> None:
    bus = make_bus()
    topic = bus.topic("busy")
    got: list[int] = []

    async def slowish(value: int) -> None:
        await asyncio.sleep(0.0002)
        got.append(value)

    await bus.from_topic(topic).sink(slowish).run("busy", batch_size=10)
    accepted: list[int] = []
    enough = asyncio.Event()

    async def publish_until_refused() -> None:
        for i in range(1_000_000):
            await topic.publish(i)
            accepted.append(i)
            if i == 2000:
                enough.set()

    publisher = asyncio.create_task(publish_until_refused())
    await asyncio.wait_for(enough.wait(), 30)
    await asyncio.wait_for(bus.close(), 60)
    with pytest.raises(er.ClosedError, match="closing"):
        await asyncio.wait_for(publisher, 10)
    assert sorted(got) == accepted


async def test_a_cancelled_stop_or_close_leaves_nothing_running(
    make_bus: Callable[[], er.Bus],
) -> None:
    bus = make_bus()
    before = asyncio.all_tasks()
    got: list[int] = []

    async def slow(value: int) -> None:
        await asyncio.sleep(0.01)
        got.append(value)

    job = await bus.from_collection(list(range(2000))).sink(slow).run("slow")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(job.stop(drain=True), 0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.close(), 0.1)
    await bus.close()  # waits for what the cancelled close left to finish
    assert job.done
    settled = len(got)
    await asyncio.sleep(0.1)
    assert len(got) == settled, "nothing runs after close"
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if not t.done() and t is not current]
    assert not left, left


async def test_a_second_close_waits_for_the_first(make_bus: Callable[[], er.Bus]) -> None:
    bus = make_bus()
    topic = bus.topic("twice")
    got: list[int] = []

    async def slow(value: int) -> None:
        await asyncio.sleep(0.001)
        got.append(value)

    await bus.from_topic(topic).sink(slow).run("twice")
    for i in range(300):
        await topic.publish(i)
    first = asyncio.create_task(bus.close())
    await asyncio.sleep(0)
    await asyncio.wait_for(bus.close(), 30)
    assert got == list(range(300))
    await first


class NeverStarts(er.BaseSource[er.ConnectorConfig]):
    """A source whose service is not there: start() always fails."""

    kind = "never-starts"

    async def start(self) -> None:
        raise ConnectionRefusedError("nothing listens on 127.0.0.1:1")


async def test_a_source_that_cannot_start_fails_its_stage(bus: er.Bus) -> None:
    job = await bus.from_source(NeverStarts()).sink(lambda v: None).run()
    with pytest.raises(er.StageFailed, match="nothing listens"):
        await asyncio.wait_for(job.wait(), 30)
