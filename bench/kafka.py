"""W2: a Kafka pipeline on the Tansu broker. W1 events as JSON (key = user) preloaded into
``w2-in`` (3 partitions); consume, parse, map and filter as W1, produce JSON to an output
topic; against a raw aiokafka consume-transform-produce loop, one message at a time, in the
same run and on the same broker.

Both are timed the same way, by an observer in another process reading the output topic
(``bench/kafka_observer.py``): from the first output record to the last expected one, so a
consumer group's join (about 3 s on Tansu with a 6 s session timeout) is not counted; it is
reported as ``startup_s`` (from starting the implementation to the first output). ``events``
counts the input records; ``ok`` means the output holds exactly the expected records, once.

With ``--transport kafka`` the eventray side runs on ``er.connect("kafka://...",
value_format="json")``: ``w2-in`` and the output are the bus's own topics, read by a named
``from_topic`` stream (its consumer group) and written by publishing to the output topic.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import eventray as er
from eventray_kafka.testing import KafkaBroker

from .harness import Options, Row
from .streams import BASE_TS, run_async

PARTITIONS = 3
GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
TIME_LIMIT = 120.0  # seconds any one run may take
ROOT = Path(__file__).resolve().parent.parent


def w2_records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"u{i % 1000}".encode(),
             json.dumps({"user": f"u{i % 1000}", "amount": i % 100, "ts": BASE_TS + i}).encode())
            for i in range(n)]


def w2_expected(n: int) -> set[int]:
    """The ``ts`` of every record that must reach the output (its doubled amount % 3 != 0)."""
    return {BASE_TS + i for i in range(n) if (i % 100) * 2 % 3 != 0}


def transform(event: dict[str, Any]) -> dict[str, Any]:
    return {"user": event["user"], "amount": event["amount"] * 2, "ts": event["ts"]}


def keep(event: dict[str, Any]) -> bool:
    return bool(event["amount"] % 3 != 0)


async def _preload(broker: KafkaBroker, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers,
                                max_batch_size=512 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send("w2-in", value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class _Observer:
    """``bench.kafka_observer`` in a process of its own, reading ``topic``."""

    def __init__(self, broker: KafkaBroker, topic: str, events: int) -> None:
        self.args = [broker.bootstrap_servers, topic, str(events)]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.kafka_observer", *self.args, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the W2 observer did not start: {line!r}")

    async def result(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        out: dict[str, Any] = json.loads(await self.process.stdout.read())
        await self.process.wait()
        return out

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _raw_loop(broker: KafkaBroker, n: int, out: str) -> None:
    """The hand-written baseline: one message at a time, ``await send`` each."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer("w2-in", bootstrap_servers=broker.bootstrap_servers,
                                group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", **GROUP)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        async for message in consumer:
            event = transform(json.loads(message.value))
            if keep(event):
                await producer.send(out, json.dumps(event).encode(), key=message.key)
            seen += 1
            if seen == n:
                break
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


async def _measure(broker: KafkaBroker, impl: str, n: int, options: Options) -> Row:
    out = f"w2-out-{impl}"
    await broker.create_topic(out, partitions=PARTITIONS)
    observer = _Observer(broker, out, n)
    await observer.start()
    try:
        async with asyncio.timeout(TIME_LIMIT):
            started = time.monotonic()
            if impl == "raw-aiokafka":
                await _raw_loop(broker, n, out)
                result = await observer.result()
            else:
                result = await _eventray(broker, n, out, options, observer)
    finally:
        await observer.stop()
    transport = "-" if impl == "raw-aiokafka" else options.transport
    parallelism = 1 if impl == "raw-aiokafka" else options.parallelism
    return Row("W2", impl, transport, parallelism, n, result["last"] - result["first"],
               result["ok"], {"startup_s": result["first"] - started})


async def _eventray(broker: KafkaBroker, n: int, out: str, options: Options,
                    observer: _Observer) -> dict[str, Any]:
    servers = broker.bootstrap_servers
    if options.transport == "kafka":
        return await _on_kafka_topics(broker, out, options, observer)
    async with er.connect(options.transport) as bus:
        job = await (
            bus.from_source({"kind": "kafka-source", "brokers": servers, "topic": "w2-in",
                             "group_id": f"eventray-{uuid.uuid4().hex[:6]}",
                             "from_beginning": True, **GROUP})
            .set_parallelism(options.parallelism)
            .map(transform)
            .filter(keep)
            .sink({"kind": "kafka-sink", "brokers": servers, "topic": out, "key": "user"})
            .run("w2", parallelism=options.parallelism)
        )
        try:
            return await observer.result()
        finally:
            await job.stop(drain=True)


async def _on_kafka_topics(broker: KafkaBroker, out: str, options: Options,
                           observer: _Observer) -> dict[str, Any]:
    async with er.connect(f"kafka://{broker.bootstrap_servers}", value_format="json",
                          **GROUP) as bus:
        job = await (
            bus.from_topic("w2-in")
            .set_parallelism(options.parallelism)
            .map(transform)
            .filter(keep)
            .sink(bus.topic(out))
            .run(f"w2-{uuid.uuid4().hex[:6]}", parallelism=options.parallelism)
        )
        try:
            return await observer.result()
        finally:
            await job.stop(drain=True)


async def _w2(options: Options) -> list[Row]:
    n = options.events
    async with KafkaBroker() as broker:
        await broker.create_topic("w2-in", partitions=PARTITIONS)
        await _preload(broker, w2_records(n))
        return [await _measure(broker, "raw-aiokafka", n, options),
                await _measure(broker, "eventray", n, options)]


def w2(options: Options) -> list[Row]:
    rows: list[Row] = run_async(_w2(options))
    return rows
