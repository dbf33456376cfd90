"""Topics of the ``kafka://`` transport: each eventray topic is a Kafka topic.

Publishing. A topic's events are written by a ``kafka-sink`` sharing the transport's
producer; ``publish`` returns once the brokers acknowledged them, so what a publish accepted
is durable, and ``flush`` knows the offsets it has to see delivered. Events without a key go
to one partition per bus, so one publisher's events keep their order everywhere; keyed
events go to their key's partition (order per key).

Subscribing. A plain subscriber (``topic >> f``) gets what is published after it
subscribed, as on every transport: it reads every partition with a consumer of its own (no
group, nothing committed), from the end. ``ListOffsets(latest)`` may report less than the
true end on some brokers (Tansu), so the end is taken from the high watermark of a first
fetch. Records that do not decode become dead letters naming topic, partition and offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from eventray import (
    ClosedError,
    ConnectorError,
    DeadLetter,
    Event,
    SubscriptionSpec,
    TransportError,
)
from eventray.spi import BatchChannel, deliver_from, describe

from ._client import connection_options, start_client
from ._sink import KafkaSink
from ._source import record_events
from ._wire import Undecodable

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from ._config import KafkaSinkConfig
    from ._transport import KafkaTransport

log = logging.getLogger("eventray")

POLL_MS = 100  # how long a subscription's fetch waits when there is nothing new
END_PROBE_SECONDS = 30.0  # finding the true end of a topic's partitions, at most


class TopicWriter(KafkaSink):
    """A ``kafka-sink`` on the transport's shared producer; records without a key all go to
    the bus's own partition."""

    def __init__(self, config: KafkaSinkConfig, producer: AIOKafkaProducer, home: int):
        super().__init__(config)
        self._producer = producer
        self._home = home

    def _unkeyed_partition(self, partitions: list[int]) -> int:
        return partitions[self._home % len(partitions)]

    async def stop(self) -> None:
        """The producer is the transport's: nothing to stop here."""


class KafkaTopic:
    """One eventray topic as a Kafka topic (see the module docstring)."""

    def __init__(self, name: str, kafka_name: str, transport: KafkaTransport) -> None:
        self.name = name
        self.kafka_name = kafka_name
        self._transport = transport
        self._writer: TopicWriter | None = None
        self._subscriptions: dict[int, Subscription] = {}

    async def _ready_writer(self) -> TopicWriter:
        if self._writer is None:
            await self._transport.ensure_topic(self.kafka_name)
            self._writer = self._transport.writer(self.kafka_name)
        return self._writer

    async def publish(self, batch: list[Event]) -> None:
        """Write ``batch``; events that cannot be written (a value that does not serialize,
        a record too large, a write the brokers refused for good) are raised as
        ``RejectedEvents``, which the topic makes dead letters; the rest are written."""
        writer = await self._ready_writer()
        await writer.write(batch)

    async def subscribe(self, spec: SubscriptionSpec) -> None:
        await self._transport.ensure_topic(self.kafka_name)
        subscription = Subscription(self, spec)
        await subscription.start()
        self._subscriptions[spec.id] = subscription

    async def unsubscribe(self, spec: SubscriptionSpec, *, drain: bool) -> None:
        subscription = self._subscriptions.pop(spec.id, None)
        if subscription is not None:
            await subscription.stop(drain=drain)

    async def flush(self) -> None:
        """Until this process's subscribers processed everything this bus published here."""
        ends = dict(self._transport.published.get(self.kafka_name, {}))
        for subscription in tuple(self._subscriptions.values()):
            await subscription.caught_up(ends)

    async def close(self) -> None:
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        await asyncio.gather(*(s.stop(drain=False) for s in subscriptions))

    async def dead_letters(self, letters: list[DeadLetter]) -> None:
        await self._transport.dead_letters(self.name, letters)


class Subscription:
    """One plain subscriber: a consumer of every partition from the end, a bounded channel,
    and the delivery loop feeding the subscriber from it."""

    def __init__(self, topic: KafkaTopic, spec: SubscriptionSpec) -> None:
        transport = topic._transport
        self.topic = topic
        self.spec = spec
        self.channel: BatchChannel[Event] = BatchChannel(transport.queue_size)
        self.positions: dict[int, int] = {}  # per partition, the next offset to hand over
        self._decode, self._decode_key = transport.decoders(topic.kafka_name)
        self._consumer: AIOKafkaConsumer | None = None
        self._moved = asyncio.Condition()
        self._stopping = False
        self._failure: BaseException | None = None  # what ended the fetch loop, if not a stop
        self._pumping: asyncio.Task[None] | None = None
        self._delivering: asyncio.Task[None] | None = None

    async def start(self) -> None:
        transport = self.topic._transport
        config = transport.connection

        def make() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(**connection_options(config), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    fetch_max_wait_ms=POLL_MS)

        consumer = await start_client(make, config, kind="kafka")
        try:
            self.positions = await _true_ends(consumer, self.topic.kafka_name)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        name = f"{self.topic.name}>{self.spec.name}"
        self._delivering = transport.tasks.spawn(deliver_from(self.channel, self.spec),
                                                 name=name)
        self._pumping = transport.tasks.spawn(self._pump(), name=f"{name}:fetch")

    async def _pump(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        failures = 0
        try:
            while not self._stopping:
                try:
                    batches = await consumer.getmany(timeout_ms=POLL_MS,
                                                     max_records=self.spec.max_batch)
                except KafkaError as exc:
                    failures += 1
                    wait = min(5.0, 0.1 * 2**failures)
                    log.warning("topic %r: fetching for %s failed (%s); retrying in %.1fs",
                                self.topic.name, self.spec.name, describe(exc), wait)
                    await asyncio.sleep(wait)
                    continue
                failures = 0
                for tp in sorted(batches, key=lambda tp: tp.partition):
                    await self._hand_over(tp, batches[tp])
                if batches:
                    async with self._moved:
                        self._moved.notify_all()
        except ClosedError:
            pass  # abandoned: unsubscribed without draining
        except Exception as exc:
            self._failure = exc
            raise
        finally:
            self._stopping = True
            async with self._moved:
                self._moved.notify_all()

    async def _hand_over(self, tp: TopicPartition, records: list[Any]) -> None:
        events = record_events(records, self._decode, self._decode_key, "kafka", Undecodable)
        letters: list[DeadLetter] = [e.value for e in events if type(e.value) is Undecodable]
        if letters:
            events = [e for e in events if type(e.value) is not Undecodable]
            try:
                await self.topic.dead_letters(letters)
            except Exception as exc:  # the subscription goes on
                log.error("topic %r: %d dead letter(s) for records that do not decode are "
                          "lost: %s; the first: %s", self.topic.name, len(letters),
                          describe(exc), letters[0].error)
        if events:
            await self.channel.put(events)
        self.positions[tp.partition] = records[-1].offset + 1

    async def caught_up(self, ends: dict[int, int]) -> None:
        """Until everything before ``ends`` (offsets per partition) was processed."""
        def reached() -> bool:
            return self._stopping or all(self.positions.get(partition, 0) >= end
                                         for partition, end in ends.items())

        async with self._moved:
            await self._moved.wait_for(reached)
        if self._failure is not None:
            raise TransportError(f"the subscription of {self.spec.name} to topic "
                                 f"{self.topic.name!r} failed: {describe(self._failure)}",
                                 transport="kafka") from self._failure
        await self.channel.join()

    async def stop(self, *, drain: bool) -> None:
        """With ``drain``, what was fetched reaches the subscriber first."""
        self._stopping = True
        if not drain:
            self.channel.abandon()
        tasks = [t for t in (self._pumping, self._delivering) if t is not None]
        if self._pumping is not None:
            await asyncio.gather(self._pumping, return_exceptions=True)
        self.channel.close()
        if self._delivering is not None:
            if not drain:
                self._delivering.cancel()
            await asyncio.gather(self._delivering, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("topic %r: %s failed", self.topic.name, task.get_name(),
                          exc_info=task.exception())
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await consumer.topics()  # refreshes the metadata
        await asyncio.sleep(0.1)
    raise TransportError(f"no partitions of Kafka topic {topic!r} after 5s", transport="kafka")


async def _true_ends(consumer: AIOKafkaConsumer, topic: str) -> dict[int, int]:
    """Assign every partition of ``topic`` and move to its end: where ``ListOffsets``
    says, then to the high watermark a first fetch reports (records fetched on the way were
    published before the subscriber subscribed)."""
    partitions = await _partitions(consumer, topic)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + END_PROBE_SECONDS
    while any(consumer.highwater(tp) is None for tp in partitions):
        if loop.time() > deadline:
            raise TransportError(f"the end of Kafka topic {topic!r} is unknown after "
                                 f"{END_PROBE_SECONDS:g}s", transport="kafka")
        try:
            await consumer.getmany(*partitions, timeout_ms=POLL_MS)
        except KafkaError as exc:
            raise ConnectorError(f"finding the end of {topic!r}: {describe(exc)}",
                                 kind="kafka", retriable=True) from exc
    ends = {}
    for tp in partitions:
        end = consumer.highwater(tp)
        assert end is not None
        consumer.seek(tp, end)
        ends[tp.partition] = end
    return ends


Decoders = tuple[Callable[[bytes], Any], Callable[[bytes], Any]]
