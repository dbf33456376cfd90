"""The stream half of the public API, run unchanged on every transport (see conftest)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventray as er
from eventray.testing import ListSink, ListSource, Recorder

TEXT = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps", "a fox runs"]


def word_count(bus: er.Bus, lines: list[str]) -> er.Stream:
    return (
        bus.from_collection(lines)
        .flat_map(str.split)
        .map(lambda word: (word, 1))
        .key_by(lambda pair: pair[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
    )


def finals(pairs: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for word, count in pairs:
        out[word] = count
    return out


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_word_count_equals_plain_python(bus: er.Bus, parallelism: int) -> None:
    lines = TEXT * 50
    expected = Counter(word for line in lines for word in line.split())
    running = await word_count(bus, lines).collect(parallelism=parallelism)
    assert finals(running) == dict(expected)
    assert len(running) == sum(expected.values()), "reduce emits once per record"
    for word in expected:  # in order per key: the running counts of a word go 1, 2, 3, ...
        assert [c for w, c in running if w == word] == list(range(1, expected[word] + 1))


async def test_async_handlers_everywhere(bus: er.Bus) -> None:
    async def split(line: str) -> list[str]:
        await asyncio.sleep(0)
        return line.split()

    async def upper(word: str) -> str:
        return word.upper()

    async def long(word: str) -> bool:
        return len(word) > 3

    async def first_letter(word: str) -> str:
        return word[0]

    async def longest(a: str, b: str) -> str:
        return max(a, b, key=len)

    result = await (
        bus.from_collection(TEXT)
        .flat_map(split).map(upper).filter(long).key_by(first_letter).reduce(longest)
        .collect()
    )
    expected, longest_so_far = [], {}
    for word in (w.upper() for line in TEXT for w in line.split() if len(w) > 3):
        previous = longest_so_far.get(word[0], word)
        longest_so_far[word[0]] = max(previous, word, key=len)
        expected.append(longest_so_far[word[0]])
    assert result == expected


async def test_with_timestamps_sets_event_time(bus: er.Bus) -> None:
    class ShowTime:
        def process(self, batch: list[er.Event]) -> list[er.Event]:
            return [event.replace_value((event.value, event.ts)) for event in batch]

    result = await bus.from_values(5, 7).with_timestamps(lambda v: v * 1000).apply(
        ShowTime()
    ).collect()
    assert result == [(5, 5000), (7, 7000)]


async def test_apply_sync_and_async_operators(bus: er.Bus) -> None:
    class Doubler:
        def process(self, batch: list[er.Event]) -> list[er.Event]:
            return [e for event in batch for e in (event, event)]

    class AsyncNegate:
        async def process(self, batch: list[er.Event]) -> list[er.Event]:
            await asyncio.sleep(0)
            return [event.replace_value(-event.value) for event in batch]

    assert await bus.from_values(1, 2).apply(Doubler()).apply(AsyncNegate()).collect() == [
        -1, -1, -2, -2
    ]


async def test_union_interleaves_and_keeps_each_streams_order(bus: er.Bus) -> None:
    left = bus.from_collection(range(0, 500))
    right = bus.from_collection(range(1000, 1500)).map(lambda v: v)
    merged = await left.union(right).collect()
    assert sorted(merged) == [*range(0, 500), *range(1000, 1500)]
    assert [v for v in merged if v < 1000] == list(range(0, 500))
    assert [v for v in merged if v >= 1000] == list(range(1000, 1500))


async def test_read_text_file_and_sinks(bus: er.Bus, tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("one\ntwo\r\nthree\n")
    called: list[str] = []
    sink = ListSink()
    topic_values = Recorder()
    out = bus.topic("file-lines")
    out >> topic_values
    result = await (
        bus.read_text_file(path).sink(called.append).sink(sink).sink(out).collect()
    )
    await out.flush()
    assert result == called == sink.values == topic_values.values == ["one", "two", "three"]
    assert sink.stopped


async def test_from_source_connector(bus: er.Bus) -> None:
    source = ListSource(values=list(range(20)))
    assert await bus.from_source(source).map(lambda v: v * v).collect() == [
        v * v for v in range(20)
    ]


async def test_from_topic_streams_until_drained(bus: er.Bus) -> None:
    topic = bus.topic("live")
    got: list[int] = []
    job = await bus.from_topic(topic).map(lambda v: v + 1).sink(got.append).run("live-job")
    for i in range(100):
        await topic.publish(i)
    await topic.flush()
    await job.stop(drain=True)
    assert job.done
    assert got == list(range(1, 101))


async def test_dead_letters_and_the_stream_goes_on(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    result = await bus.from_values("1", "x", "3", "y").map(int, name="parse").collect()
    assert result == [1, 3]
    await bus.dead_letters.flush()
    assert [d.value for d in letters.values] == ["x", "y"]
    first = letters.values[0]
    assert first.stage.startswith("stream-")
    assert first.stage.endswith(".parse"), "the stage names the job and the operator"
    assert first.error.startswith("ValueError: invalid literal for int()")


async def test_on_error_policies(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    skipped = await bus.from_values("1", "x").map(int, on_error="skip").collect()
    assert skipped == [1]
    by_stream = await bus.from_values("1", "x").map(int).collect(on_error="skip")
    assert by_stream == [1]
    job = await bus.from_values("1", "x", "2").map(int, name="strict", on_error="fail").run(
        "failing-job"
    )
    with pytest.raises(er.StageFailed) as failed:
        await job.wait()
    assert failed.value.job == "failing-job"
    assert "strict" in failed.value.stage
    assert "invalid literal" in failed.value.error
    await bus.dead_letters.flush()
    assert letters.values == [], "skip and fail send nothing to dead letters"


async def test_metrics_count_records_per_stage(bus: er.Bus) -> None:
    job = await bus.from_collection(range(100)).filter(lambda v: v % 2).run("metered")
    await job.wait()
    metrics = job.metrics()
    (name, stage), *_ = metrics.items()
    assert name.startswith("metered.") and name.endswith(".0")
    assert stage["records_in"] == 100
    assert stage["records_out"] == 50


async def test_slow_sink_slows_the_source(bus: er.Bus) -> None:
    gate = asyncio.Event()
    done: list[int] = []

    async def slow(value: int) -> None:
        await gate.wait()
        done.append(value)

    job = await (
        bus.from_collection(range(200_000)).map(lambda v: v).set_parallelism(2)
        .sink(slow).run("backpressure", batch_size=100)
    )
    read = -1
    while True:  # wait until the source stops making progress
        await asyncio.sleep(0.2)
        now = sum(m["records_in"] for n, m in job.metrics().items() if ".from_collection" in n)
        if now == read:
            break
        read = now
    assert read < 20_000, f"the source read {read} records ahead of a stuck sink"
    gate.set()
    await asyncio.wait_for(job.wait(), 120)
    assert sorted(done) == list(range(200_000))


async def test_config_errors_fail_at_construction(bus: er.Bus) -> None:
    stream = bus.from_values(1)
    with pytest.raises(er.ConfigError, match="on_error"):
        stream.map(str, on_error="ignore")
    with pytest.raises(er.ConfigError, match="callable"):
        stream.map(42)  # type: ignore[arg-type]
    with pytest.raises(er.ConfigError, match="parallelism"):
        stream.set_parallelism(0)
    with pytest.raises(er.ConfigError, match="Tumbling"):
        stream.window("1 minute")  # type: ignore[arg-type]
    with pytest.raises(er.ConfigError, match="seconds"):
        er.Tumbling(seconds=0)
    with pytest.raises(er.ConfigError, match="every"):
        er.Sliding(seconds=10, every=3)
    with pytest.raises(er.ConfigError, match="job names"):
        await stream.run("no spaces")
    with pytest.raises(er.ConfigError, match="bounded"):
        await bus.from_topic("forever").collect()
    with pytest.raises(er.ConfigError, match="process"):
        stream.apply(print)  # type: ignore[arg-type]
    with pytest.raises(er.ConfigError, match="merge"):
        stream.key_by(str).window(er.Session(gap=1)).aggregate(list, lambda a, v: a)


# windows

def at(seconds: float, key: str = "k", value: Any = 1) -> dict[str, Any]:
    return {"ts": int(seconds * 1000), "key": key, "value": value}


def windowed(bus: er.Bus, records: list[dict[str, Any]]) -> er.WindowedStream:
    return bus.from_collection(records).with_timestamps(lambda r: r["ts"]).key_by(
        lambda r: r["key"]
    ).window


async def test_tumbling_windows_with_out_of_order_events(bus: er.Bus) -> None:
    records = [at(0.5), at(1.5), at(0.7), at(2.2, "j"), at(1.1), at(3.5), at(2.9)]
    result = await windowed(bus, records)(er.Tumbling(seconds=1, lateness=2)).count().collect()
    assert sorted(result) == [
        er.WindowResult("j", 2000, 3000, 1),
        er.WindowResult("k", 0, 1000, 2),
        er.WindowResult("k", 1000, 2000, 2),
        er.WindowResult("k", 2000, 3000, 1),
        er.WindowResult("k", 3000, 4000, 1),
    ]


async def test_late_events_go_to_dead_letters(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    records = [at(0.1), at(1.2), at(5.0), at(0.3), at(5.5)]
    result = await windowed(bus, records)(er.Tumbling(seconds=1)).count().collect()
    assert sorted(result) == [
        er.WindowResult("k", 0, 1000, 1),
        er.WindowResult("k", 1000, 2000, 1),
        er.WindowResult("k", 5000, 6000, 2),
    ]
    await bus.dead_letters.flush()
    (late,) = letters.values
    assert late.value == at(0.3)
    assert late.error.startswith("LateEvent: event time 300 is behind the watermark 5000")


async def test_sliding_windows_sum(bus: er.Bus) -> None:
    records = [at(0.5, value=1), at(1.5, value=10), at(2.5, value=100)]
    result = await windowed(bus, records)(er.Sliding(seconds=2, every=1)).sum(
        lambda r: r["value"]
    ).collect()
    assert sorted((r.start, r.end, r.value) for r in result) == [
        (-1000, 1000, 1), (0, 2000, 11), (1000, 3000, 110), (2000, 4000, 100)
    ]


async def test_session_windows_split_on_gaps(bus: er.Bus) -> None:
    records = [at(0), at(1), at(2.5), at(10), at(10.5), at(1, "j"), at(30)]
    result = await windowed(bus, records)(er.Session(gap=2, lateness=10)).aggregate(
        list, lambda acc, r: [*acc, r["ts"] // 1000], merge=lambda a, b: a + b,
        result=sorted,
    ).collect()
    assert sorted(result) == [
        er.WindowResult("j", 1000, 3000, [1]),
        er.WindowResult("k", 0, 4500, [0, 1, 2]),
        er.WindowResult("k", 10000, 12500, [10, 10]),
        er.WindowResult("k", 30000, 32000, [30]),
    ]


async def test_window_reduce(bus: er.Bus) -> None:
    records = [at(0.1, value=3), at(0.2, value=9), at(0.3, value=4)]
    result = await windowed(bus, records)(er.Tumbling(seconds=1)).reduce(
        lambda a, b: a if a["value"] > b["value"] else b
    ).collect()
    assert [r.value["value"] for r in result] == [9]


async def test_processing_time_windows_close_by_the_clock(bus: er.Bus) -> None:
    topic = bus.topic("clicks")
    results: list[er.WindowResult] = []
    job = await (
        bus.from_topic(topic).key_by(lambda click: click)
        .window(er.Tumbling(seconds=0.2, time="processing")).count()
        .sink(results.append).run("clicks-per-window", linger=0)
    )
    for user in ("ann", "bob", "ann"):
        await topic.publish(user)
    await topic.flush()
    for _ in range(100):  # no further events: the clock alone must close the window
        if results:
            break
        await asyncio.sleep(0.05)
    assert sorted((r.key, r.value) for r in results) == [("ann", 2), ("bob", 1)]
    assert all(r.end - r.start == 200 for r in results)
    await job.stop()


async def test_closing_the_bus_drains_running_jobs(make_bus: Callable[[], er.Bus]) -> None:
    bus = make_bus()
    topic = bus.topic("to-close")
    got: list[int] = []
    job = await bus.from_topic(topic).map(lambda v: v * 2).sink(got.append).run("closing")
    for i in range(10):
        await topic.publish(i)
    await bus.close()
    assert job.done
    assert got == [v * 2 for v in range(10)]


async def test_stop_without_drain_cancels_at_once(bus: er.Bus) -> None:
    topic = bus.topic("stuck")
    gate = asyncio.Event()

    async def stuck(value: int) -> None:
        await gate.wait()

    job = await bus.from_topic(topic).sink(stuck).run("stuck")
    await topic.publish(1)
    await topic.flush()
    await asyncio.wait_for(job.stop(drain=False), 10)
    assert job.done


async def test_trickling_topic_input_loses_nothing(bus: er.Bus) -> None:
    """Records arriving a few at a time, with lingering micro-batches across stages: every
    one of them reaches the sink (cancelled waits inside the stage loop must not drop any)."""
    topic = bus.topic("trickle")
    got: list[int] = []
    job = await (
        bus.from_topic(topic).map(lambda v: v).set_parallelism(2)
        .key_by(lambda v: v % 7).reduce(lambda a, b: b).sink(got.append)
        .run("trickle", parallelism=2, linger=0.002)
    )
    for i in range(2000):
        await topic.publish(i)
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    await topic.flush()
    await job.stop(drain=True)
    assert sorted(got) == list(range(2000))


async def test_stream_sink_rejecting_some_events(bus: er.Bus) -> None:
    from .test_topics import PickySink

    letters = Recorder()
    bus.dead_letters >> letters
    passed = await bus.from_collection(range(6)).sink(PickySink()).collect()
    await bus.dead_letters.flush()
    assert passed == list(range(6)), "a sink passes every record on"
    assert [d.value for d in letters.values] == [1, 3, 5]
    assert letters.values[0].error == "odd: 1"
