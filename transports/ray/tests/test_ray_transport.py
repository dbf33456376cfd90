"""What only the Ray transport does: Ray actors and tasks as subscribers, topics shared across
processes, stage actors by name, and nothing left behind after close()."""

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
from eventray.testing import Recorder

pytestmark = pytest.mark.usefixtures("ray_session")


@ray.remote
class Counter:
    """A Rayvens-style actor: ingest(event) one at a time."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def ingest(self, value: Any) -> None:
        if value == "boom":
            raise ValueError("cannot ingest boom")
        self.values.append(value)

    def seen(self) -> list[Any]:
        return self.values


@ray.remote
class BatchCounter:
    """The fast path: ingest_batch(values)."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def ingest_batch(self, values: list[Any]) -> None:
        self.batches.append(values)

    def ingest(self, value: Any) -> None:
        raise AssertionError("ingest_batch wins when both exist")

    def seen(self) -> list[list[Any]]:
        return self.batches


@ray.remote
class Rayvens07:
    """Rayvens 0.7 subscribers took events through append()."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def append(self, value: Any) -> None:
        self.values.append(value)

    def record(self, value: Any) -> None:
        self.values.append(("record", value))

    def seen(self) -> list[Any]:
        return self.values


@ray.remote
class Comparator:
    """Rayvens' quote comparator: an operator returning a message or None."""

    def __init__(self) -> None:
        self.last: float | None = None

    def ingest(self, quote: float) -> str | None:
        try:
            if self.last is None:
                return None
            return "up" if quote > self.last else "down" if quote < self.last else "same"
        finally:
            self.last = quote


@ray.remote
class Sink:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> None:
        self.values.append(value)

    def seen(self) -> list[Any]:
        return self.values


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("ray", namespace=f"ray-test-{uuid.uuid4().hex[:8]}") as connected:
        yield connected


async def test_actor_ingest_in_order_and_failures_become_dead_letters(bus: er.Bus) -> None:
    counter = Counter.remote()  # type: ignore[attr-defined]
    letters = Recorder()
    bus.dead_letters >> letters
    topic = bus.topic("to-actor")
    assert (topic >> counter) is counter
    for value in [*range(200), "boom", *range(200, 300)]:
        topic << value
    await topic.flush()
    assert await counter.seen.remote() == list(range(300))
    (letter,) = await letters.wait_for(1)
    assert letter.value == "boom"
    assert letter.error == "ValueError: cannot ingest boom"
    assert letter.stage == "Counter.ingest"


async def test_actor_ingest_batch_is_the_fast_path(bus: er.Bus) -> None:
    counter = BatchCounter.remote()  # type: ignore[attr-defined]
    topic = bus.topic("batched")
    topic >> counter
    for i in range(5000):
        await topic.publish(i)
    await topic.flush()
    batches = await counter.seen.remote()
    assert [v for batch in batches for v in batch] == list(range(5000))
    assert len(batches) < 100, "events arrive in batches, not one call each"


async def test_rayvens_append_actors_and_actor_methods(bus: er.Bus) -> None:
    old, other = Rayvens07.remote(), Rayvens07.remote()  # type: ignore[attr-defined]
    topic = bus.topic("rayvens")
    topic >> old
    topic >> other.record
    topic << "a" << "b"
    await topic.flush()
    assert await old.seen.remote() == ["a", "b"]
    assert await other.seen.remote() == [("record", "a"), ("record", "b")]


async def test_remote_functions_run_as_tasks(bus: er.Bus) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    topic = bus.topic("tasks")
    topic.subscribe(lambda v: None)  # a local subscriber beside the task one
    topic.subscribe(_square_into(sink), ordered=False, max_concurrency=4)
    for i in range(20):
        await topic.publish(i)
    await topic.flush()
    assert sorted(await sink.seen.remote()) == [i * i for i in range(20)]


def _square_into(sink: Any) -> Any:
    @ray.remote
    def square(value: int) -> None:
        ray.get(sink.add.remote(value * value))

    return square


async def test_actor_without_ingest_is_refused(bus: er.Bus) -> None:
    sink = Sink.remote()  # type: ignore[attr-defined]
    with pytest.raises(er.ConfigError, match="ingest_batch, ingest or append"):
        bus.topic("refused") >> sink


async def test_actor_operator_topic_like_rayvens(bus: er.Bus) -> None:
    comparator = Comparator.remote()  # type: ignore[attr-defined]
    received = Recorder()
    quotes = bus.topic("quotes")
    quotes >> bus.topic("comparator", operator=comparator) >> received
    for quote in (10.0, 11.0, 11.0, 9.5):
        quotes << quote
    await quotes.flush()
    assert received.values == ["up", "same", "down"]


async def test_stage_actors_are_named_and_gone_after_the_job(bus: er.Bus) -> None:
    namespace = bus.transport.options.namespace  # type: ignore[attr-defined]
    topic = bus.topic("numbers")
    got: list[int] = []
    job = await (
        bus.from_topic(topic).map(lambda v: v + 1).key_by(lambda v: v % 2)
        .reduce(lambda a, b: a + b).sink(got.append).run("named", parallelism=2)
    )
    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == namespace}
    assert {"named.from_topic:numbers+map+key_by.0", "named.reduce.0",
            "named.reduce.1"} <= names
    assert "named.sink.0" not in names, "a sink calling back into the driver runs there"
    for i in range(10):
        await topic.publish(i)
    await topic.flush()
    await job.stop(drain=True)
    assert len(got) == 10
    assert {25, 30} <= set(got), "the final running sums of odd and even numbers"
    left = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == namespace and a["name"].startswith("named.")}
    assert not left, f"stage actors left behind: {left}"


async def test_killed_stage_actor_fails_the_job_with_its_name(bus: er.Bus) -> None:
    namespace = bus.transport.options.namespace  # type: ignore[attr-defined]
    topic = bus.topic("doomed")
    job = await bus.from_topic(topic).map(lambda v: v).set_parallelism(1).key_by(str).reduce(
        lambda a, b: b).run("doomed", parallelism=2)
    ray.kill(ray.get_actor("doomed.reduce.1", namespace=namespace))
    with pytest.raises(er.StageFailed) as failed:
        await asyncio.wait_for(job.wait(), 30)
    assert failed.value.stage == "doomed.reduce.1"
    assert "died" in failed.value.error


async def test_close_leaves_no_actor_behind() -> None:
    namespace = f"ray-close-{uuid.uuid4().hex[:8]}"
    async with er.connect("ray", namespace=namespace) as bus:
        bus.topic("a") >> print
        await bus.topic("a").flush()
        await bus.from_values(1, 2).map(str).key_by(str).reduce(max).collect(parallelism=2)
        during = [a for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == namespace]
        assert during, "topics are actors while the bus is open"
    after = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == namespace]
    assert after == []
    assert ray.is_initialized(), "a Ray the bus joined is left running"


SUBPROCESS = """
import asyncio, sys
import eventray as er

async def main():
    async with er.connect("ray", namespace=sys.argv[1]) as bus:
        topic = bus.topic("shared")
        for i in range(5):
            await topic.publish(f"from another process {i}")
        await topic.flush()

asyncio.run(main())
"""


async def test_same_topic_name_across_processes(bus: er.Bus) -> None:
    namespace = bus.transport.options.namespace  # type: ignore[attr-defined]
    received = Recorder()
    shared = bus.topic("shared")
    shared >> received
    await shared.flush()  # the topic actor exists before the other process looks for it
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", textwrap.dedent(SUBPROCESS), namespace],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address},
    )
    assert done.returncode == 0, done.stderr
    assert await received.wait_for(5, timeout=30) == [
        f"from another process {i}" for i in range(5)
    ]


@ray.remote
class Shortchanger:
    """An operator whose ingest_batch drops a result: one per event is the contract."""

    def ingest_batch(self, values: list[Any]) -> list[Any]:
        return values[:-1] if len(values) > 1 else values


async def test_ingest_batch_results_of_another_length_are_dead_letters(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    received = Recorder()
    source = bus.topic("short-in")
    shortchanger = Shortchanger.remote()  # type: ignore[attr-defined]
    source >> bus.topic("short-out", operator=shortchanger) >> received
    source << 1 << 2 << 3  # queued before the topic hands them over: one batch of three
    await source.flush()
    got = await letters.wait_for(3)
    assert received.values == [], "no silent truncation"
    assert [letter.value for letter in got] == [1, 2, 3]
    assert all(
        "Shortchanger.ingest_batch returned 2 results for 3 events" in letter.error
        for letter in got
    ), got[0].error
