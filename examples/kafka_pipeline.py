"""A Kafka pipeline: orders in, large orders out, a bad record to the dead letters.

A kafka-source reads the `orders` topic as a consumer group, the stream keeps the orders of
100 or more, and a kafka-sink writes them, keyed by user, to `large-orders`. The broker is
the test broker of `eventray_kafka.testing` (Tansu, on a free 127.0.0.1 port) unless
EVENTRAY_TEST_KAFKA names one.

    python examples/kafka_pipeline.py            # memory transport
    python examples/kafka_pipeline.py ray        # stages on Ray
"""

import asyncio
import json
import sys

import eventray as er
from eventray_kafka.testing import KafkaBroker

ORDERS = [{"id": 1, "user": "ann", "amount": 120}, {"id": 2, "user": "bob", "amount": 30},
          {"id": 3, "user": "ann", "amount": 250}, {"id": 4, "user": "cy", "amount": 100}]


async def main(url: str = "memory") -> None:
    async with KafkaBroker() as kafka, er.connect(url) as bus:
        await kafka.create_topic("orders", partitions=3)
        await kafka.create_topic("large-orders", partitions=3)
        await kafka.produce("orders", [(order["user"].encode(), json.dumps(order).encode())
                                       for order in ORDERS] + [(b"dee", b"{not json")])
        bus.dead_letters >> (lambda letter: print("dead letter:", letter.error))

        job = await (
            bus.from_source({"kind": "kafka-source", "brokers": kafka.bootstrap_servers,
                             "topic": "orders", "group_id": "large-orders",
                             "from_beginning": True, "session_timeout_ms": 6000,
                             "heartbeat_interval_ms": 1000})
            .filter(lambda order: order["amount"] >= 100)
            .sink({"kind": "kafka-sink", "brokers": kafka.bootstrap_servers,
                   "topic": "large-orders", "key": "user"})
            .run("large-orders")
        )
        records = await kafka.consume("large-orders", 3, timeout=60)
        await job.stop(drain=True)  # commits the group's offsets: a rerun starts after them
        for record in sorted(records, key=lambda r: json.loads(r.value)["id"]):
            print(record.key.decode(), json.loads(record.value))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
