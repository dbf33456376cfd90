"""Topics kept in Kafka: `er.connect("kafka://...")`, and every topic is a Kafka topic.

What is published stays in the topic, so a named stream started later reads it from the
start, and a second run of the same job goes on from its consumer group's offsets. The broker
is the test broker of `eventray_kafka.testing` (Tansu, on a free 127.0.0.1 port) unless
EVENTRAY_TEST_KAFKA names one.

    python examples/kafka_topics.py
"""

import asyncio

import eventray as er
from eventray_kafka.testing import KafkaBroker


async def count_words(url: str, run: int) -> None:
    async with er.connect(url, session_timeout_ms=3000, heartbeat_interval_ms=500) as bus:
        lines = bus.topic("lines")
        for line in (f"run {run} says hello", f"run {run} says bye"):
            await lines.publish(line)
        await lines.flush()  # in Kafka now
        counts: dict[str, int] = {}
        job = await (
            bus.from_topic("lines")
            .flat_map(str.split)
            .key_by(lambda word: word)
            .map(lambda word: (word, 1))
            .reduce(lambda a, b: (a[0], a[1] + b[1]))
            .sink(lambda pair: counts.update([pair]))
            .run("word-counts")
        )
        await job.stop(drain=True)  # reads what this bus published, commits the offsets
        print(f"run {run}:", dict(sorted(counts.items())))


async def main() -> None:
    async with KafkaBroker() as kafka:
        url = f"kafka://{kafka.bootstrap_servers}"
        await count_words(url, 1)
        await count_words(url, 2)  # reads only the new lines: the group remembers


if __name__ == "__main__":
    asyncio.run(main())
