"""The topic half of the public API, run unchanged on every transport (see conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import eventray as er
from eventray.testing import ListSink, ListSource, Recorder


async def test_hello_delivers_in_order(bus: er.Bus) -> None:
    topic = bus.topic("example")
    received = Recorder()
    assert (topic >> received) is received
    topic << "hello" << "world"
    await topic.flush()
    assert received.values == ["hello", "world"]


async def test_same_name_is_same_topic(bus: er.Bus) -> None:
    received = Recorder()
    bus.topic("shared") >> received
    await bus.topic("shared").publish(1)
    await bus.topic("shared").flush()
    assert bus.topic("shared") is bus.topic("shared")
    assert received.values == [1]


def durable(bus: er.Bus) -> bool:
    """Whether the transport keeps topics in a log (Kafka): publishers are not held back by
    slow subscribers, and order is per key (per partition), not across keys."""
    return bus.transport.name == "kafka"


async def test_publish_carries_key_headers_and_time(bus: er.Bus) -> None:
    topic = bus.topic("keyed")
    events: list[er.Event] = []
    topic.subscribe(events.append, events=True)
    await topic.publish({"n": 1}, key="user-1", headers={"trace": "abc"}, ts=1_700_000_000_000)
    await topic.publish("plain")
    await topic.flush()
    first, second = events
    if durable(bus) and first.key is None:  # a key has its own partition: no order across
        first, second = second, first
    assert (first.value, first.key, first.headers, first.ts) == (
        {"n": 1}, "user-1", {"trace": "abc"}, 1_700_000_000_000
    )
    assert second.key is None and second.ts > 1_700_000_000_000


async def test_each_publishers_order_is_kept_for_every_subscriber(bus: er.Bus) -> None:
    topic = bus.topic("ordering")
    plain = Recorder()
    seen_async: list[Any] = []

    async def async_subscriber(value: Any) -> None:
        seen_async.append(value)

    topic >> plain
    topic >> async_subscriber

    async def publisher(pid: int) -> None:
        for seq in range(2000):
            await topic.publish((pid, seq))

    await asyncio.gather(*(publisher(pid) for pid in range(4)))
    await topic.flush()
    for seen in (plain.values, seen_async):
        assert len(seen) == 8000
        for pid in range(4):
            assert [seq for p, seq in seen if p == pid] == list(range(2000))


async def test_fan_out_reaches_every_subscriber(bus: er.Bus) -> None:
    topic = bus.topic("fan-out")
    recorders = [Recorder() for _ in range(3)]
    for recorder in recorders:
        topic >> recorder
    for i in range(100):
        topic << i
    await topic.flush()
    assert all(recorder.values == list(range(100)) for recorder in recorders)


async def test_topics_chain_and_flush_follows_the_chain(bus: er.Bus) -> None:
    first, middle, last = bus.topic("first"), bus.topic("middle"), bus.topic("last")
    received = Recorder()

    async def slow(value: Any) -> None:
        await asyncio.sleep(0.001)
        received(value)

    assert (first >> middle >> last) is last
    last >> slow
    for i in range(50):
        await first.publish(i)
    await first.flush()
    assert received.values == list(range(50))


async def test_operator_topic_publishes_results_and_drops_none(bus: er.Bus) -> None:
    evens = bus.topic("evens", operator=lambda n: n * 10 if n % 2 == 0 else None)
    received = Recorder()
    evens >> received
    for i in range(6):
        evens << i
    await evens.flush()
    assert received.values == [0, 20, 40]


async def test_async_and_batch_operators(bus: er.Bus) -> None:
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    class Pairs:
        """An Operator: emits each event twice."""

        def process(self, batch: list[er.Event]) -> list[er.Event]:
            return [e for event in batch for e in (event, event)]

    received = Recorder()
    source = bus.topic("words")
    loud = bus.topic("loud", operator=shout)
    paired = source >> loud >> Pairs()
    assert isinstance(paired, er.Topic)
    paired >> received
    await source.publish("a")
    await source.publish("b")
    await source.flush()
    assert received.values == ["A", "A", "B", "B"]


async def test_source_topic_feeds_subscribers_once_subscribed(bus: er.Bus) -> None:
    source = ListSource(values=list(range(10)))
    topic = bus.topic("numbers", source=source)
    await asyncio.sleep(0.05)
    assert not source.started, "a source starts with its first subscriber"
    received = Recorder()
    topic >> received
    assert await received.wait_for(10) == list(range(10))


async def test_source_operator_sink_pipeline(bus: er.Bus) -> None:
    sink = ListSink()
    source = bus.topic("raw", source=ListSource(values=["1", "2", "x", "3"]))
    parsed = bus.topic("parsed", operator=int)
    stored = bus.topic("stored", sink=sink)
    letters = Recorder()
    bus.dead_letters >> letters
    source >> parsed >> stored
    await letters.wait_for(1)
    await source.flush()
    assert sink.values == [1, 2, 3]
    assert sink.flushes >= 1
    assert letters.values[0].value == "x"


async def test_sink_subscribers_and_sink_configs(bus: er.Bus) -> None:
    sink = ListSink()
    topic = bus.topic("to-sink")
    assert (topic >> sink) is sink
    await topic.publish("kept")
    await topic.flush()
    assert sink.values == ["kept"] and sink.started


async def test_flush_waits_for_slow_subscribers(bus: er.Bus) -> None:
    topic = bus.topic("slow")
    done: list[int] = []

    async def slow(value: int) -> None:
        await asyncio.sleep(0.002)
        done.append(value)

    topic >> slow
    for i in range(30):
        topic << i
    await topic.flush()
    assert done == list(range(30))


async def test_cancelled_subscription_gets_nothing_more(bus: er.Bus) -> None:
    topic = bus.topic("cancel")
    kept, cancelled = Recorder(), Recorder()
    topic >> kept
    subscription = topic.subscribe(cancelled, name="goes-away")
    assert subscription.name == "goes-away" and subscription.active
    for i in range(3):
        topic << i
    await subscription.cancel()
    assert not subscription.active
    for i in range(3, 6):
        topic << i
    await topic.flush()
    assert cancelled.values == [0, 1, 2], "events queued before cancel() are still delivered"
    assert kept.values == list(range(6))


async def test_slow_subscriber_bounds_memory_and_slows_publisher(bus: er.Bus) -> None:
    topic = bus.topic("backpressure")
    gate = asyncio.Event()
    received: list[int] = []

    async def blocked(value: int) -> None:
        await gate.wait()
        received.append(value)

    topic >> blocked
    published = 0

    async def publish_all() -> None:
        nonlocal published
        for i in range(100_000):
            await topic.publish(i)
            published += 1

    publisher = asyncio.create_task(publish_all())
    try:
        if durable(bus):  # the log takes everything; the subscriber's queue stays bounded
            await asyncio.wait_for(publisher, 120)
        else:
            stalled_at = -1
            while stalled_at != published:  # wait until the publisher stops making progress
                stalled_at = published
                await asyncio.sleep(0.2)
            assert not publisher.done()
            assert published < 20_000, f"{published} events buffered behind a stuck subscriber"
        gate.set()
        await asyncio.wait_for(publisher, 60)
    finally:
        gate.set()
        publisher.cancel()
    await topic.flush()
    assert received == list(range(100_000))


async def test_failing_subscriber_sends_dead_letters_and_others_go_on(bus: er.Bus) -> None:
    topic = bus.topic("orders")
    healthy, letters = Recorder(), Recorder()
    accepted: list[int] = []

    def picky(value: int) -> None:
        if value % 2:
            raise ValueError(f"odd value {value}")
        accepted.append(value)

    topic.subscribe(picky, name="picky")
    topic >> healthy
    bus.dead_letters >> letters
    for i in range(6):
        await topic.publish(i, key=f"k{i}")
    await topic.flush()
    await bus.dead_letters.flush()
    in_order: Callable[[list[Any]], list[Any]] = sorted if durable(bus) else list
    assert in_order(healthy.values) == list(range(6))
    assert in_order(accepted) == [0, 2, 4]
    assert in_order([letter.value for letter in letters.values]) == [1, 3, 5]
    letter = next(letter for letter in letters.values if letter.value == 1)
    assert isinstance(letter, er.DeadLetter)
    assert letter.error == "ValueError: odd value 1"
    assert letter.stage == "picky"
    assert letter.key == "k1"


async def test_unordered_subscriber_runs_concurrently_up_to_its_bound(bus: er.Bus) -> None:
    topic = bus.topic("unordered")
    running = peak = 0
    done: list[int] = []

    async def worker(value: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(value)

    topic.subscribe(worker, ordered=False, max_concurrency=4)
    for i in range(40):
        topic << i
    await topic.flush()
    assert sorted(done) == list(range(40))
    assert peak == 4


async def test_async_iteration_and_leaving_the_loop_unsubscribes(bus: er.Bus) -> None:
    topic = bus.topic("iterated")
    got: list[int] = []

    async def consume() -> None:
        async for value in topic:
            got.append(value)
            if len(got) == 3:
                break

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for i in range(3):
        await topic.publish(i)
    await asyncio.wait_for(consumer, 10)
    assert got == [0, 1, 2]
    for i in range(5000):  # nobody reads any more: this must not block
        await asyncio.wait_for(topic.publish(i), 5)
    await asyncio.wait_for(topic.flush(), 10)


async def test_closed_bus_refuses_work(make_bus: Callable[[], er.Bus]) -> None:
    bus = make_bus()
    topic = bus.topic("closing")
    received = Recorder()
    topic >> received
    topic << "last words"
    await bus.close()
    assert received.values == ["last words"], "close() delivers what was published first"
    await bus.close()  # idempotent
    with pytest.raises(er.ClosedError):
        await topic.publish("too late")
    with pytest.raises(er.ClosedError):
        bus.topic("new")


async def test_subscriber_config_errors(bus: er.Bus) -> None:
    topic = bus.topic("errors")
    with pytest.raises(er.ConfigError, match="cannot subscribe an int"):
        topic >> 42
    with pytest.raises(er.ConfigError, match="max_concurrency"):
        topic.subscribe(print, max_concurrency=4)
    with pytest.raises(er.ConfigError, match="max_concurrency"):
        topic.subscribe(print, ordered=False, max_concurrency=0)
    with pytest.raises(er.ConfigError, match="topic names"):
        bus.topic("has space")
    with pytest.raises(er.UnknownKindError, match="no-such-source"):
        bus.topic("bad-source", source={"kind": "no-such-source"})
    with pytest.raises(er.ConfigError, match="operator"):
        bus.topic("errors", operator=str)
    with pytest.raises(er.ConfigError, match="is not a sink"):
        bus.topic("not-a-sink", sink=ListSource(values=[]))


class PickySink(er.BaseSink[er.ConnectorConfig]):
    """Writes even values; rejects odd ones (only those)."""

    kind = "picky-sink"

    def __init__(self) -> None:
        super().__init__()
        self.written: list[int] = []

    async def write(self, batch: Sequence[er.Event]) -> None:
        rejected = [(i, f"odd: {e.value}") for i, e in enumerate(batch) if e.value % 2]
        self.written += [e.value for e in batch if not e.value % 2]
        if rejected:
            raise er.RejectedEvents(rejected, kind=self.kind)


async def test_sink_rejecting_some_events_dead_letters_only_those(bus: er.Bus) -> None:
    letters = Recorder()
    bus.dead_letters >> letters
    sink = PickySink()
    topic = bus.topic("picky", sink=sink)
    for i in range(6):
        topic << i
    await topic.flush()
    await bus.dead_letters.flush()
    assert sink.written == [0, 2, 4]
    assert [(d.value, d.error) for d in letters.values] == [(1, "odd: 1"), (3, "odd: 3"),
                                                           (5, "odd: 5")]
