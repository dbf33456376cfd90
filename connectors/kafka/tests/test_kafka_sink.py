"""kafka-sink against a real Kafka-protocol broker on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_kafka import KafkaSink
from eventray_kafka.testing import KafkaBroker


async def deliver(sink: Any, events: list[er.Event]) -> list[er.DeadLetter]:
    """Write ``events`` through a stream ending in ``sink``; the dead letters of it."""
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        job = await bus.from_source(_Events(events)).sink(sink).run()
        await job.wait()
        await bus.dead_letters.flush()
        return list(letters.values)


class _Events(er.BaseSource[er.ConnectorConfig]):
    """A bounded source of whole events (key, time and headers kept)."""

    kind = "events"
    bounded = True

    def __init__(self, events: list[er.Event]) -> None:
        super().__init__()
        self.events = list(events)

    async def read(self, max_events: int) -> list[er.Event] | None:
        if not self.events:
            return None
        batch, self.events = self.events[:max_events], self.events[max_events:]
        return batch


async def write(sink: KafkaSink, events: list[er.Event]) -> None:
    await sink.start()
    try:
        await sink.write(events)
        await sink.flush()
    finally:
        await sink.stop()


async def test_values_keys_times_and_headers_become_records(kafka: KafkaBroker,
                                                            topic: str) -> None:
    await kafka.create_topic(topic, partitions=3)
    sink = KafkaSink(brokers=kafka.bootstrap_servers, topic=topic, key="user",
                     headers={"app": "test", "trace": "sink"})
    events = [er.Event({"user": f"u{i % 5}", "n": i}, ts=1_700_000_000_000 + i,
                       headers={"trace": f"t{i}"} if i == 0 else None) for i in range(50)]
    await write(sink, events)
    records = await kafka.consume(topic, 50, settle=0.3)
    assert len(records) == 50
    by_n = {json.loads(r.value)["n"]: r for r in records}
    assert sorted(by_n) == list(range(50))
    first = by_n[0]
    assert (first.key, first.timestamp) == (b"u0", 1_700_000_000_000)
    assert dict(first.headers) == {"app": b"test", "trace": b"t0"}
    assert dict(by_n[1].headers) == {"app": b"test", "trace": b"sink"}
    partitions = {r.key: set() for r in records}
    for record in records:
        partitions[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), "one partition per key"
    assert sink.records == 50


async def test_key_callable_event_keys_and_formats(kafka: KafkaBroker, topic: str) -> None:
    await kafka.create_topic(topic)
    await write(KafkaSink(brokers=kafka.bootstrap_servers, topic=topic,
                          key=lambda v: v.upper(), value_format="text"), [er.Event("ab")])
    await write(KafkaSink(brokers=kafka.bootstrap_servers, topic=topic,
                          value_format="bytes"), [er.Event(b"\x00raw", key=("k", 1))])
    await write(KafkaSink(brokers=kafka.bootstrap_servers, topic=topic,
                          serializer=lambda v: f"<{v}>".encode(), compression="gzip",
                          linger_ms=5), [er.Event(7)])
    await write(KafkaSink(brokers=kafka.bootstrap_servers, topic=topic),
                [er.Event(b'{"already": "json"}'), er.Event("text")])
    records = await kafka.consume(topic, 5)
    assert [(r.key, r.value) for r in records] == [
        (b"AB", b"ab"), (b'["k",1]', b"\x00raw"), (None, b"<7>"),
        (None, b'{"already": "json"}'), (None, b'"text"')]


async def test_events_that_do_not_serialize_are_dead_letters(kafka: KafkaBroker,
                                                             topic: str) -> None:
    await kafka.create_topic(topic)
    sink = KafkaSink(brokers=kafka.bootstrap_servers, topic=topic, key="user")
    events = [er.Event({"user": "a", "n": 1}), er.Event({"n": 2}), er.Event({"user": "c",
              "bad": {1, 2}}), er.Event({"user": "d", "n": 4})]
    letters = await deliver(sink, events)
    assert [(d.value, d.error) for d in letters] == [
        ({"n": 2}, "KeyError: \"the value has no field 'user' for the record key\""),
        ({"user": "c", "bad": {1, 2}}, "TypeError: Object of type set is not JSON "
                                       "serializable"),
    ]
    records = await kafka.consume(topic, 2, settle=0.3)
    assert sorted(json.loads(r.value)["n"] for r in records) == [1, 4]


async def test_unkeyed_records_of_a_batch_go_to_one_partition(kafka: KafkaBroker,
                                                              topic: str) -> None:
    await kafka.create_topic(topic, partitions=3)
    sink = KafkaSink(brokers=kafka.bootstrap_servers, topic=topic, max_batch_size=1024)
    await sink.start()
    try:
        for batch in range(3):
            await sink.write([er.Event(f"{batch}-{i}" * 10) for i in range(40)])
    finally:
        await sink.stop()
    records = await kafka.consume(topic, 120, settle=0.3)
    assert len(records) == 120
    partitions = {r.value.decode()[1:3].strip('"-'): r.partition for r in records}
    assert sorted(set(partitions.values())) == [0, 1, 2], "batches take partitions in turn"
    assert sink.batches > 3, "max_batch_size cut the batches"


async def test_a_record_over_max_request_size_is_a_dead_letter(kafka: KafkaBroker,
                                                               topic: str) -> None:
    sink = KafkaSink(brokers=kafka.bootstrap_servers, topic=topic, max_batch_size=512,
                     max_request_size=1000)
    await sink.start()
    try:
        with pytest.raises(er.RejectedEvents) as rejected:
            await sink.write([er.Event("small"), er.Event("x" * 2000), er.Event("y" * 900)])
    finally:
        await sink.stop()
    assert rejected.value.failures == [
        (1, "ValueError: the record is 2088 bytes, over max_request_size (1000)")]
    records = await kafka.consume(topic, 2, settle=0.2)
    assert [len(r.value) for r in records] == [7, 902], "a big record gets a batch of its own"


async def test_no_broker_fails_start_after_bounded_retries() -> None:
    sink = KafkaSink(brokers="127.0.0.1:1", topic="t", connect_retries=1,
                     retry_backoff_ms=20)
    with pytest.raises(er.ConnectorError, match="kafka-sink: cannot reach the Kafka brokers"):
        await sink.start()
