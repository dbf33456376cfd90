"""The ``kafka://`` transport: topics are Kafka topics (durable, shared by every bus on the
brokers), named streams read them through their consumer group, bad records are dead letters.
The conformance suite (tests/conformance) runs on it too; these are what only Kafka has."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import until

import eventray as er
from eventray.testing import Recorder
from eventray_kafka import KafkaSource
from eventray_kafka.testing import KafkaBroker

FAST_GROUPS = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500,
               "request_timeout_ms": 5000}


@pytest.fixture
def namespace() -> str:
    return f"tr-{uuid.uuid4().hex[:8]}"


def connect(kafka: KafkaBroker, namespace: str, **options: Any) -> er.Bus:
    return er.connect(f"kafka://{kafka.bootstrap_servers}", namespace=namespace,
                      **{**FAST_GROUPS, **options})


async def test_a_named_stream_reads_what_came_before_it_then_resumes_from_its_group(
        kafka: KafkaBroker, namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        numbers = bus.topic("numbers")
        for i in range(10):
            await numbers.publish(i)  # nobody listens yet: the topic keeps them
        await numbers.flush()
        out = Recorder()
        job = await bus.from_topic("numbers").map(lambda v: v * 10).sink(out).run("tens")
        assert await out.wait_for(10, timeout=30) == [i * 10 for i in range(10)]
        await job.stop(drain=True)  # commits what it read to its group
    async with connect(kafka, namespace) as bus:  # another program, later
        numbers = bus.topic("numbers")
        for i in range(10, 15):
            await numbers.publish(i)
        await numbers.flush()
        out = Recorder()
        job = await bus.from_topic("numbers").map(lambda v: v * 10).sink(out).run("tens")
        assert await out.wait_for(5, timeout=30) == [i * 10 for i in range(10, 15)]
        await job.stop(drain=True)
        assert out.values == [i * 10 for i in range(10, 15)]  # nothing read twice
    committed = await kafka.committed(f"{namespace}.eventray.tens.numbers",
                                      f"{namespace}.numbers")
    assert sum(committed.values()) == 15


async def test_a_plain_subscriber_gets_only_what_is_published_after_it_subscribed(
        kafka: KafkaBroker, namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        topic = bus.topic("later")
        for i in range(50):
            await topic.publish(("before", i))
        await topic.flush()
        seen = Recorder()
        topic >> seen
        for i in range(5):
            await topic.publish(("after", i))
        await topic.flush()
        assert seen.values == [("after", i) for i in range(5)]


async def test_two_buses_share_a_topic_and_split_a_named_streams_partitions(
        kafka: KafkaBroker, namespace: str) -> None:
    async with connect(kafka, namespace) as first, connect(kafka, namespace) as second:
        results = Recorder()
        first.topic("results") >> results  # one program watches what both compute
        jobs = [await bus.from_topic("work").map(lambda v: ("done", v)).sink(
                    bus.topic("results")).run("workers")
                for bus in (first, second)]

        def both_joined() -> bool:
            return all(job.metrics() and any(m.get("records_in", 0) > 0
                                             for m in job.metrics().values())
                       for job in jobs)

        work = second.topic("work")
        for i in range(400):
            await work.publish(i, key=f"k{i}")  # keys spread over the partitions
        await work.flush()
        await until(lambda: len(results.values) >= 400, timeout=60, what="400 results")
        await until(both_joined, timeout=30, what="both programs taking part")
        for job in jobs:
            await job.stop(drain=True)
        await asyncio.sleep(0.5)
        assert sorted(v for _, v in results.values) == list(range(400))  # each once


async def test_records_that_do_not_decode_are_dead_letters_saying_where(
        kafka: KafkaBroker, namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        topic = bus.topic("mixed")
        letters, seen = Recorder(), Recorder()
        bus.dead_letters >> letters
        topic >> seen
        await topic.publish("good")
        await topic.flush()
        await kafka.produce(f"{namespace}.mixed", [b"not a pickle"], partition=0)
        await topic.publish("also good")
        await until(lambda: len(seen.values) == 2 and len(letters.values) == 1,
                    what="the good values and one dead letter")
        letter = letters.values[0]
        assert isinstance(letter, er.DeadLetter)
        assert letter.value == b"not a pickle"
        assert f"topic '{namespace}.mixed', partition 0, offset" in letter.error
        assert seen.values == ["good", "also good"]


async def test_a_stream_can_read_the_dead_letter_topic(kafka: KafkaBroker,
                                                       namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        watched = Recorder()
        job = await bus.from_topic("dead-letters").sink(watched).run("watch")

        def picky(value: int) -> None:
            raise ValueError(f"no {value}")

        bus.topic("orders").subscribe(picky, name="picky")
        await bus.topic("orders").publish(7)
        await bus.topic("orders").flush()
        letters = await watched.wait_for(1, timeout=30)
        await job.stop(drain=True)
        assert [(x.value, x.error, x.stage) for x in letters] == [(7, "ValueError: no 7",
                                                                   "picky")]
        assert len(watched.values) == 1  # not sent round again as a bad record


async def test_json_topics_are_shared_with_other_kafka_clients(kafka: KafkaBroker,
                                                               namespace: str) -> None:
    async with connect(kafka, namespace, value_format="json") as bus:
        topic = bus.topic("orders")
        seen = Recorder()
        topic >> seen
        await topic.publish({"id": 1}, key="u1")
        await topic.flush()
        records = await kafka.consume(f"{namespace}.orders", count=1)
        assert [(r.key, json.loads(r.value)) for r in records] == [(b"u1", {"id": 1})]
        await kafka.produce(f"{namespace}.orders", [(b"u2", b'{"id": 2}')])
        await seen.wait_for(2)
        assert seen.values == [{"id": 1}, {"id": 2}]


async def test_topic_names_kafka_refuses_are_escaped(kafka: KafkaBroker,
                                                     namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        topic = bus.topic("a/b>c")
        seen = Recorder()
        topic >> seen
        await topic.publish(1)
        await topic.flush()
        assert seen.values == [1]
        assert [r.value for r in await kafka.consume(f"{namespace}.a__sl__b__gt__c", 1)]
        with pytest.raises(er.ConfigError, match="__gt__"):
            await bus.topic("x__gt__y").publish(1)


async def test_no_broker_fails_connect_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = er.connect(f"kafka://127.0.0.1:{port}", connect_retries=1)
    with pytest.raises(er.TransportError, match=f"cannot reach the Kafka brokers at "
                                                f"127.0.0.1:{port}"):
        async with bus:
            pass


@pytest.mark.parametrize(("url", "options", "field"), [
    ("kafka://", {}, "url"),
    ("kafka://127.0.0.1:9092", {"partitions": 0}, "partitions"),
    ("kafka://127.0.0.1:9092", {"value_format": "xml"}, "value_format"),
    ("kafka://127.0.0.1:9092", {"namespace": ""}, "namespace"),
    ("kafka://127.0.0.1:9092", {"acks": 1}, "acks"),
    ("kafka://127.0.0.1:9092", {"security_protocol": "SSL", "sasl_mechanism": "PLAIN"},
     "sasl_mechanism"),
])
def test_bad_options_fail_at_connect(url: str, options: dict[str, Any], field: str) -> None:
    with pytest.raises(er.ConfigError, match=field):
        er.connect(url, **options)


@pytest.mark.parametrize("value_format", ["pickle", "json"])
async def test_dead_letters_reach_the_dead_letter_topic_in_every_format(
        kafka: KafkaBroker, namespace: str, value_format: str) -> None:
    async with connect(kafka, namespace, value_format=value_format) as bus:
        letters = Recorder()
        bus.dead_letters >> letters

        def boom(value: Any) -> None:
            raise ValueError("bad")

        bus.topic("orders").subscribe(boom, name="boom")
        await bus.topic("orders").publish({"id": 1})
        await bus.topic("orders").flush()
        await bus.dead_letters.flush()
        assert [(x.value, x.error, x.stage) for x in letters.values] == [
            ({"id": 1}, "ValueError: bad", "boom")]


async def test_a_value_that_cannot_be_sent_is_a_dead_letter_with_its_repr(
        kafka: KafkaBroker, namespace: str) -> None:
    async with connect(kafka, namespace) as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        await bus.topic("things").publish(threading.Lock())  # does not pickle
        await bus.topic("things").publish(b"x" * 2_000_000)  # over max_request_size
        await bus.topic("things").flush()
        await bus.dead_letters.flush()
        assert [letter.stage for letter in letters.values] == ["topic:things"] * 2
        assert letters.values[0].value.startswith("<lock that cannot be sent: <unlocked")
        assert "pickle" in letters.values[0].error
        assert letters.values[1].value.startswith("<bytes that cannot be sent: b'xxx")
        assert "max_request_size" in letters.values[1].error


async def test_a_resumed_parallel_stream_counts_each_record_once_when_commits_lagged(
        kafka: KafkaBroker, namespace: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_commit = KafkaSource.commit

    async def first_commit_only(self: KafkaSource, state: Any) -> None:
        if self.commits >= 1:  # later commits fail: the group's offsets lag the checkpoints
            self.commits += 1
            raise er.ConnectorError("commit failed (test)", kind=self.kind)
        await real_commit(self, state)

    monkeypatch.setattr(KafkaSource, "commit", first_commit_only)
    counts: dict[int, int] = {}

    async def slowly(value: int) -> int:
        await asyncio.sleep(0.005)
        return value

    def run(bus: er.Bus, resume: bool) -> Any:
        return (bus.from_topic("numbers").set_parallelism(2).map(slowly)
                .key_by(lambda v: v % 4).map(lambda v: (v % 4, 1))
                .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(lambda kv: counts.update([kv]))
                .run("counting", checkpoint_interval=0.2, batch_size=10,
                     checkpoint_store=tmp_path, resume=resume))

    async with connect(kafka, namespace) as bus:
        for i in range(200):
            await bus.topic("numbers").publish(i, key=i)
        await bus.topic("numbers").flush()
        job = await run(bus, resume=False)
        await until(lambda: sum(counts.values()) >= 60, timeout=60, what="a third counted")
        await job.stop(drain=False)  # killed: its last commits had failed
    monkeypatch.setattr(KafkaSource, "commit", real_commit)
    counts.clear()
    async with connect(kafka, namespace) as bus:
        job = await run(bus, resume=True)
        await until(lambda: sum(counts.values()) == 200, timeout=60, what="every record")
        await asyncio.sleep(0.5)
        await job.stop(drain=True)
    assert counts == {0: 50, 1: 50, 2: 50, 3: 50}
