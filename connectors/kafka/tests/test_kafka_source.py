"""kafka-source against a real Kafka-protocol broker on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from kafka_helpers import GROUP_TIMEOUTS, orders, until

import eventray as er
from eventray.testing import ListSink, Recorder
from eventray_kafka import KafkaSource
from eventray_kafka.testing import KafkaBroker


async def run_until(bus: er.Bus, source: Any, count: int, *, sink: ListSink | None = None,
                    timeout: float = 20.0) -> ListSink:  # noqa: ASYNC109
    """Run ``source`` into a list sink until it holds ``count`` events, then drain."""
    sink = sink or ListSink()
    job = await bus.from_source(source).sink(sink).run()
    try:
        await until(lambda: len(sink.events) >= count, timeout, f"{count} events")
    finally:
        await job.stop(drain=True)
    return sink


async def read(source: KafkaSource, count: int, max_events: int = 1000) -> list[er.Event]:
    """At least ``count`` events straight from the connector."""
    events: list[er.Event] = []
    async with asyncio.timeout(15):
        while len(events) < count:
            events.extend(await source.read(max_events) or ())
    return events


def values(events: Sequence[er.Event]) -> list[Any]:
    return [event.value for event in events]


async def test_records_become_events_with_key_time_and_headers(kafka: KafkaBroker,
                                                               topic: str) -> None:
    await kafka.create_topic(topic, partitions=1)
    await kafka.produce(topic, orders(2))
    await kafka.produce(topic, [(None, b'"plain"', [("trace", b"t-1"), ("raw", b"\xff")])],
                        timestamp_ms=1_700_000_000_123)
    source = KafkaSource(bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                         from_beginning=True)
    async with er.connect("memory") as bus:
        sink = await run_until(bus, source, 3)
    assert values(sink.events) == [{"id": 0, "user": "u0"}, {"id": 1, "user": "u1"}, "plain"]
    assert [e.key for e in sink.events] == ["u0", "u1", None]
    now = time.time() * 1000
    assert all(now - 60_000 < e.ts <= now + 1000 for e in sink.events[:2])
    assert sink.events[2].ts == 1_700_000_000_123
    assert sink.events[2].headers == {"trace": "t-1", "raw": b"\xff".decode("utf-8",
                                                                             "surrogateescape")}
    assert len(sink.events) == 3, "nothing is read twice"


async def test_value_formats_keys_and_tombstones(kafka: KafkaBroker, topic: str) -> None:
    await kafka.create_topic(topic)
    await kafka.produce(topic, [(b"\x01k", b"caf\xc3\xa9"), (b"k2", None)])
    common = dict(brokers=kafka.bootstrap_servers, topic=topic, from_beginning=True)
    cases: list[tuple[dict[str, Any], list[Any], list[Any]]] = [
        (dict(value_format="text"), ["café", None], ["\x01k", "k2"]),
        (dict(value_format="bytes", key_format="bytes"), [b"caf\xc3\xa9", None],
         [b"\x01k", b"k2"]),
        (dict(deserializer=lambda b: len(b)), [5, None], ["\x01k", "k2"]),
    ]
    for fields, expected, keys in cases:
        source = KafkaSource(**common, **fields)
        await source.start()
        try:
            events = await read(source, 2)
        finally:
            await source.stop()
        assert (values(events), [e.key for e in events]) == (expected, keys), fields
        assert [e.position for e in events] == [(topic, 0, 0), (topic, 0, 1)]


async def test_undecodable_records_are_dead_letters_and_the_stream_goes_on(
        kafka: KafkaBroker, topic: str) -> None:
    await kafka.create_topic(topic)
    await kafka.produce(topic, [b'{"ok": 1}', b"{not json", b"\xff\xfe", b'{"ok": 2}'])
    source = KafkaSource(bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                         from_beginning=True)
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        sink = await run_until(bus, source, 2)
        dead = await letters.wait_for(2)
    assert values(sink.events) == [{"ok": 1}, {"ok": 2}]
    assert [d.value for d in dead] == [b"{not json", b"\xff\xfe"]
    assert dead[0].stage == "kafka-source"
    assert dead[0].error.startswith("JSONDecodeError: ")
    assert dead[0].error.endswith(f"(topic '{topic}', partition 0, offset 1)")
    assert dead[1].error.startswith("UnicodeDecodeError: ")
    assert dead[1].error.endswith(f"(topic '{topic}', partition 0, offset 2)")


async def test_a_raising_deserializer_makes_dead_letters(kafka: KafkaBroker,
                                                         topic: str) -> None:
    await kafka.create_topic(topic)
    await kafka.produce(topic, [b"1", b"x", b"3"])
    source = KafkaSource(bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                         from_beginning=True, deserializer=lambda b: int(b) * 10)
    await source.start()
    try:
        events = await read(source, 3)
    finally:
        await source.stop()
    assert [e.value for e in events if not isinstance(e.value, er.DeadLetter)] == [10, 30]
    letter = events[1].value
    assert isinstance(letter, er.DeadLetter)
    assert letter.value == b"x"
    assert "ValueError: invalid literal" in letter.error
    assert letter.error.endswith(f"(topic '{topic}', partition 0, offset 1)")
    assert source.dead_letters == 1


async def test_snapshot_is_what_was_handed_out_and_restore_seeks_there(
        kafka: KafkaBroker, topic: str) -> None:
    await kafka.create_topic(topic, partitions=2)
    await kafka.produce(topic, [b"%d" % i for i in range(6)], partition=0)
    await kafka.produce(topic, [b"%d" % i for i in range(10, 14)], partition=1)
    common = dict(bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                  from_beginning=True)
    first = KafkaSource(**common)
    await first.start()
    try:
        events = await read(first, 3, max_events=3)
        handed = {}
        for event in events:
            _, partition, offset = event.position
            handed[partition] = max(handed.get(partition, 0), offset + 1)
        assert first.snapshot() == {topic: handed}
        state = first.snapshot()
    finally:
        await first.stop()

    second = KafkaSource(**common)
    second.restore(state)  # before start, as a restarted stage does
    await second.start()
    try:
        rest = await read(second, 10 - len(events))
    finally:
        await second.stop()
    assert sorted(values(events) + values(rest)) == sorted([*range(6), *range(10, 14)])
    assert second.snapshot() == {topic: {0: 6, 1: 4}}

    third = KafkaSource(**common)
    await third.start()
    try:
        third.restore({topic: {0: 5}})  # after start: seeks at once
        again = await read(third, 5)
    finally:
        await third.stop()
    assert sorted(values(again)) == [5, 10, 11, 12, 13]


async def test_commit_commits_exactly_the_snapshot_to_the_group(kafka: KafkaBroker,
                                                                topic: str) -> None:
    await kafka.create_topic(topic)
    await kafka.produce(topic, [b"%d" % i for i in range(10)])
    group = f"g-{topic}"
    common = dict(bootstrap_servers=kafka.bootstrap_servers, topic=topic, group_id=group,
                  from_beginning=True, **GROUP_TIMEOUTS)
    first = KafkaSource(**common)
    first.restore({topic: {0: 2}})  # before start: seeks once the group assigns partition 0
    await first.start()
    try:
        events = await read(first, 4, max_events=4)
        state = first.snapshot()
        await read(first, 4)  # handed out, never acknowledged
        await first.commit(state)
        assert first.committed == {TopicPartition(topic, 0): 6}
    finally:
        await first.stop()
    assert values(events) == [2, 3, 4, 5]
    assert await kafka.committed(group, topic) == {0: 6}, "stop commits nothing more"


async def test_a_drained_stream_commits_what_it_handed_out(kafka: KafkaBroker,
                                                           topic: str) -> None:
    await kafka.create_topic(topic, partitions=3)
    await kafka.produce(topic, orders(30))
    group = f"g-{topic}"
    config = dict(kind="kafka-source", brokers=kafka.bootstrap_servers, topic=topic,
                  group_id=group, from_beginning=True, **GROUP_TIMEOUTS)
    async with er.connect("memory") as bus:
        first = await run_until(bus, config, 30)
        assert len(first.events) == 30
        committed = await kafka.committed(group, topic)
        assert sum(committed.values()) == 30
        await kafka.produce(topic, orders(5, start=30))
        second = await run_until(bus, config, 5)
    assert sorted(e.value["id"] for e in second.events) == [30, 31, 32, 33, 34]


async def test_parallel_instances_share_the_group(kafka: KafkaBroker, topic: str) -> None:
    await kafka.create_topic(topic, partitions=4)
    await kafka.produce(topic, orders(200))
    config = dict(kind="kafka-source", brokers=kafka.bootstrap_servers, topic=topic,
                  group_id=f"g-{topic}", from_beginning=True, **GROUP_TIMEOUTS)
    async with er.connect("memory") as bus:
        sink = ListSink()
        job = await bus.from_source(config).set_parallelism(2).sink(sink).run()
        try:
            await until(lambda: len({e.value["id"] for e in sink.events}) == 200, 20,
                        "every record")
        finally:
            await job.stop(drain=True)
        metrics = job.metrics()
    assert {e.value["id"] for e in sink.events} == set(range(200))
    sources = [m["records_in"] for name, m in metrics.items() if m["records_in"]]
    assert len(sources) >= 2 and all(sources), f"both instances read: {metrics}"


async def test_split_needs_a_group(kafka: KafkaBroker, topic: str) -> None:
    async with er.connect("memory") as bus:
        source = KafkaSource(bootstrap_servers=kafka.bootstrap_servers, topic=topic)
        with pytest.raises(er.ConfigError, match="field 'group_id': set a group_id"):
            await bus.from_source(source).set_parallelism(2).sink(ListSink()).run()


async def test_no_broker_fails_start_after_bounded_retries() -> None:
    source = KafkaSource(bootstrap_servers="127.0.0.1:1", topic="t", connect_retries=2,
                         retry_backoff_ms=50)
    started = time.monotonic()
    with pytest.raises(er.ConnectorError, match=r"kafka-source: cannot reach the Kafka "
                       r"brokers at 127.0.0.1:1 \(KafkaConnectionError: .*\) after 3 "
                       r"attempt\(s\)"):
        await source.start()
    assert time.monotonic() - started < 5
    await source.stop()  # nothing to stop: no error


async def test_a_rebalance_mid_stream_loses_and_skips_nothing(kafka: KafkaBroker,
                                                              topic: str) -> None:
    await kafka.create_topic(topic, partitions=4)
    await kafka.produce(topic, orders(400))
    group = f"g-{topic}"
    fields = dict(bootstrap_servers=kafka.bootstrap_servers, topic=topic, group_id=group,
                  from_beginning=True, **GROUP_TIMEOUTS)

    async def slowly(value: Any) -> Any:
        await asyncio.sleep(0.01)
        return value

    first, second = KafkaSource(**fields), KafkaSource(**fields)
    async with er.connect("memory") as bus:
        seen: tuple[ListSink, ListSink] = (ListSink(), ListSink())
        jobs = [await bus.from_source(first).map(slowly).sink(seen[0]).run(batch_size=20)]
        await until(lambda: len(seen[0].events) >= 40, 15, "the first consumer reading")
        handed_before = sum(first.snapshot()[topic].values())
        jobs.append(await bus.from_source(second).map(slowly).sink(seen[1]).run(batch_size=20))
        ids = lambda: {e.value["id"] for sink in seen for e in sink.events}  # noqa: E731
        try:
            await until(lambda: len(ids()) == 400 and second.snapshot(), 30, "every record")
            assert first.commits == 0 and not first.committed, "a rebalance commits nothing"
        finally:  # together: one leaving the group first would make the other rebalance
            await asyncio.gather(*(job.stop(drain=True) for job in jobs))
    assert handed_before < 400, "the second consumer joined mid-stream"
    assert ids() == set(range(400)), "nothing lost, nothing skipped"
    owned = [set(source.snapshot().get(topic, {})) for source in (first, second)]
    assert owned[0] and owned[1] and not owned[0] & owned[1], f"the group split: {owned}"
    committed = await kafka.committed(group, topic)
    ends: dict[int, int] = {}
    for record in await kafka.consume(topic, 400):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    # the drains committed what each owner handed out (a partition whose owner was caught
    # in the rebalance of the other one leaving commits nothing: it is read again)
    assert committed and all(offset <= ends[p] for p, offset in committed.items())
