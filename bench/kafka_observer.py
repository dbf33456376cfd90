"""W2's observer, in a process of its own so that it takes no CPU from what it measures:
reads a topic from the beginning and reports (as JSON) when its first record and the
``expected``-th arrived (``time.monotonic()``, the same clock in every process here), and
whether the records are exactly the expected ones.

    python -m bench.kafka_observer SERVERS TOPIC EVENTS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer

from .kafka import w2_expected


async def observe(servers: str, topic: str, events: int) -> dict[str, object]:
    expected = w2_expected(events)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    print("ready", flush=True)
    values: list[bytes] = []
    first: float | None = None
    try:
        while len(values) < len(expected):
            batches = await consumer.getmany(timeout_ms=50, max_records=10_000)
            for records in batches.values():
                if first is None:
                    first = time.monotonic()
                values.extend(record.value for record in records)
        last = time.monotonic()
        # duplicates would come after the expected count: look a little longer
        more = await consumer.getmany(timeout_ms=300)
        values.extend(record.value for records in more.values() for record in records)
    finally:
        await consumer.stop()
    got = [json.loads(value)["ts"] for value in values]
    return {"first": first, "last": last, "count": len(got),
            "ok": len(got) == len(expected) and set(got) == expected}


if __name__ == "__main__":
    servers, topic, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(observe(servers, topic, events))), flush=True)
