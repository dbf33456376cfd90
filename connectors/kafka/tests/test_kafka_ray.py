"""Kafka to Kafka on Ray: the source and sink run in stage actors."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka_helpers import orders

import eventray as er
from eventray_kafka.testing import KafkaBroker

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


async def test_round_trip_on_ray(kafka: KafkaBroker, topic: str) -> None:
    out = f"{topic}-out"
    await kafka.create_topic(topic, partitions=2)
    await kafka.create_topic(out, partitions=2)
    await kafka.produce(topic, orders(100))
    async with er.connect("ray", namespace=f"kafka-test-{uuid.uuid4().hex[:8]}") as bus:
        job = await (
            bus.from_source({"kind": "kafka-source", "brokers": kafka.bootstrap_servers,
                             "topic": topic, "from_beginning": True})
            .map(lambda order: {**order, "seen": True})
            .sink({"kind": "kafka-sink", "brokers": kafka.bootstrap_servers, "topic": out,
                   "key": "user"})
            .run("kafka-round-trip")
        )
        try:
            records = await kafka.consume(out, 100, timeout=60)
        finally:
            await job.stop(drain=True)
    assert sorted(json.loads(r.value)["id"] for r in records) == list(range(100))
    assert all(json.loads(r.value)["seen"] for r in records)
    assert {r.key for r in records} == {f"u{i}".encode() for i in range(7)}
