"""Brokers that go away, programs that die: nothing is lost or skipped."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import GROUP_TIMEOUTS, orders, until

import eventray as er
from eventray_kafka import KafkaSink, KafkaSource
from eventray_kafka.testing import KafkaBroker


async def test_a_broker_away_mid_stream_loses_nothing(kafka: KafkaBroker, topic: str) -> None:
    if kafka.external:
        pytest.skip("pauses the broker this test session started")
    out = f"{topic}-out"
    await kafka.create_topic(topic, partitions=2)
    await kafka.create_topic(out, partitions=2)
    await kafka.produce(topic, orders(300))

    async def slowly(value: Any) -> Any:
        await asyncio.sleep(0.005)
        return value

    source = KafkaSource(bootstrap_servers=kafka.bootstrap_servers, topic=topic,
                         group_id=f"g-{topic}", from_beginning=True, **GROUP_TIMEOUTS)
    sink = KafkaSink(bootstrap_servers=kafka.bootstrap_servers, topic=out, key="user",
                     request_timeout_ms=1000, retry_backoff_ms=100)
    async with er.connect("memory") as bus:
        job = await bus.from_source(source).map(slowly).sink(sink).run(batch_size=20)
        try:
            await until(lambda: sink.records >= 40, 20, "the sink writing")
            kafka.pause()
            try:
                await asyncio.sleep(3)
            finally:
                kafka.resume()
            records = await kafka.consume(out, 300, timeout=30, settle=1.0)  # dups: more
        finally:
            await job.stop(drain=True)
    ids = {json.loads(record.value)["id"] for record in records}
    assert ids == set(range(300)), f"missing: {sorted(set(range(300)) - ids)[:10]}"
    assert sink.retries > 0, "the sink sent again what the paused broker did not take"


DRIVER = Path(__file__).with_name("kafka_driver.py")


class Driver:
    """``kafka_driver.py`` in a process of its own; ``owns`` follows what it prints."""

    def __init__(self, kafka: KafkaBroker, topic: str, out: str, group: str, name: str,
                 session_ms: int) -> None:
        self.args = [sys.executable, str(DRIVER), kafka.bootstrap_servers, topic, out, group,
                     name, str(session_ms)]
        self.process: asyncio.subprocess.Process | None = None
        self.owns = -1
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Driver:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            if line.startswith(b"owns "):
                self.owns = int(line.split()[1])

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader  # ends with the output

    async def drain(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.process.wait(), 30) == 0

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


def ids_of(records: list[Any]) -> list[int]:
    return [json.loads(record.value)["id"] for record in records]


async def test_two_programs_share_a_group_and_process_each_record_once(
        kafka: KafkaBroker, topic: str) -> None:
    out, group = f"{topic}-out", f"g-{topic}"
    await kafka.create_topic(topic, partitions=4)
    await kafka.create_topic(out, partitions=1)
    async with Driver(kafka, topic, out, group, "a", 6000) as a, \
            Driver(kafka, topic, out, group, "b", 6000) as b:
        await until(lambda: a.owns > 0 and b.owns > 0 and a.owns + b.owns == 4, 30,
                    "the group to settle")
        await kafka.produce(topic, orders(400))
        records = await kafka.consume(out, 400, timeout=30, settle=0.5)
        await asyncio.gather(a.drain(), b.drain())
    assert sorted(ids_of(records)) == list(range(400)), "each record once"
    workers = {dict(record.headers)["worker"] for record in records}
    assert workers == {b"a", b"b"}
    assert sum((await kafka.committed(group, topic)).values()) == 400


async def test_a_killed_program_commits_nothing_and_a_restart_loses_nothing(
        kafka: KafkaBroker, topic: str) -> None:
    out, group = f"{topic}-out", f"g-{topic}"
    await kafka.create_topic(topic, partitions=2)
    await kafka.create_topic(out, partitions=1)
    await kafka.produce(topic, orders(1000))
    async with Driver(kafka, topic, out, group, "first", 3000) as first:
        await until(lambda: first.owns == 2, 30, "the first program to join")
        while len(await kafka.consume(out, 1, timeout=5)) < 1:
            pass
        await first.kill()  # SIGKILL mid-stream
    written = ids_of(await kafka.consume(out, 1, timeout=1, settle=0.3))
    assert 0 < len(written) < 1000, "killed mid-stream"
    assert await kafka.committed(group, topic) == {}, "a killed program commits nothing"
    async with Driver(kafka, topic, out, group, "second", 3000) as second:
        await until(lambda: second.owns == 2, 30, "the second program to join")
        records = await kafka.consume(out, 1000 + len(written), timeout=60, settle=0.3)
        await second.drain()
    assert set(ids_of(records)) == set(range(1000)), "nothing lost"
    assert sum((await kafka.committed(group, topic)).values()) == 1000
