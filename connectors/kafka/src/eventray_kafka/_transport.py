"""``KafkaTransport``: ``er.connect("kafka://host:9092")`` keeps topics in Kafka.

Topics are Kafka topics (see ``_topics``), created on first use with ``partitions``
partitions: durable, replayable, shared by every process on the same brokers. Streams run
their stages in this process, as on ``memory``; a stream reading a topic (``from_topic``)
reads it as a ``kafka-source`` in the consumer group ``eventray.<job>.<topic>``
(``<namespace>.`` first when there is one): it starts from the earliest record when the group
has no committed position, then resumes from the group's offsets, committed after each
durable checkpoint (or when the job drains). Two programs running the same named job share
the topic's partitions through that group, so each record is processed once across them
(at least once when a member joins or leaves mid-stream: a rebalance gives uncommitted
records to the next owner).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, get_args

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from eventray import ConfigError, ConnectorError, DeadLetter, Event, TransportError
from eventray.spi import (
    DEAD_LETTERS,
    Batch,
    ConnectorReader,
    JobBackend,
    JobPlan,
    LocalJob,
    Processor,
    StageContext,
    Subscriber,
    TaskOwner,
    TopicReader,
    describe,
)

from ._client import start_client
from ._config import KafkaConnection, KafkaSourceConfig
from ._sink import KafkaSink
from ._source import KafkaSource
from ._topics import Decoders, KafkaTopic, TopicWriter
from ._wire import (
    TopicFormat,
    Undecodable,
    encode_dead_letter,
    kafka_name,
    key_codec,
    value_codec,
)

log = logging.getLogger("eventray")

_ALREADY_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS error code


def parse_url(url: str) -> str:
    """``kafka://host:port[,host:port...]`` as bootstrap servers."""
    scheme, sep, servers = url.partition("://")
    if scheme != "kafka" or not sep or not servers.strip("/"):
        raise ConfigError(f"expected kafka://host:port[,host:port], got {url!r}",
                          kind="kafka", field="url")
    return servers.strip("/")


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive int, got {value!r}", kind="kafka", field=name)
    return value


class KafkaTransport:
    """Topics as Kafka topics and stream stages as tasks in this process.

    ``namespace`` prefixes every Kafka topic and group (``<namespace>.``); ``partitions`` and
    ``replication_factor`` are those of the topics this transport creates; ``value_format``
    is ``"pickle"`` (any Python value, for eventray programs) or ``"json"`` (readable by
    other Kafka clients); ``session_timeout_ms``/``heartbeat_interval_ms`` are those of the
    streams' consumer groups; ``queue_size`` bounds each subscriber's queue, in events. Any
    other keyword is a connection field of ``kafka-source``/``kafka-sink`` (security,
    timeouts, ``connect_retries``).
    """

    name = "kafka"
    in_process = True
    batch_size = 1000

    def __init__(
        self,
        url: str = "kafka://127.0.0.1:9092",
        *,
        namespace: str | None = None,
        partitions: int = 4,
        replication_factor: int = 1,
        value_format: TopicFormat = "pickle",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        queue_size: int = 1000,
        **connection: Any,
    ) -> None:
        servers = parse_url(url)
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigError(f"must be a non-empty str, got {namespace!r}", kind="kafka",
                              field="namespace")
        if value_format not in get_args(TopicFormat):
            raise ConfigError(f"must be one of {get_args(TopicFormat)}, got {value_format!r}",
                              kind="kafka", field="value_format")
        self.namespace = namespace
        self.partitions = _positive("partitions", partitions)
        self.replication_factor = _positive("replication_factor", replication_factor)
        self.queue_size = _positive("queue_size", queue_size)
        self.value_format = value_format
        encode, self._decode = value_codec(value_format)
        encode_key, self._decode_key = key_codec(value_format)
        unknown = set(connection) - set(KafkaConnection.model_fields) - {"brokers"}
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))} (options are "
                              "those of the transport and the connection fields of "
                              "kafka-source/kafka-sink)", kind="kafka", field=min(unknown))
        fields = {"bootstrap_servers": servers, **connection}
        self._sink_config = KafkaSink(fields, topic="-", serializer=encode,
                                      key_serializer=encode_key).config
        self._source_config = KafkaSource(
            fields, topic="-", value_format="bytes", deserializer=self._decode,
            key_deserializer=self._decode_key, from_beginning=True,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms).config
        self.connection: KafkaConnection = self._sink_config
        self._dead_letter_topic = kafka_name(DEAD_LETTERS, namespace)
        self.home = uuid.uuid4().int  # the partition of this bus's events without a key
        self.tasks = TaskOwner("kafka")
        self._publisher: KafkaSink | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._created: dict[str, asyncio.Task[None]] = {}
        self._dead_letters: KafkaTopic | None = None
        # per Kafka topic and partition, the offset after the last record this bus published
        self.published: dict[str, dict[int, int]] = {}

    async def open(self) -> None:
        """Connect the shared producer and the admin client (bounded retries)."""
        publisher = KafkaSink(self._sink_config)
        try:
            await publisher.start()
            config = self.connection
            self._admin = await start_client(
                lambda: AIOKafkaAdminClient(bootstrap_servers=config.servers,
                                            request_timeout_ms=config.request_timeout_ms,
                                            security_protocol=config.security_protocol),
                config, kind="kafka")
        except ConnectorError as exc:
            await publisher.stop()
            raise TransportError(str(exc).removeprefix(f"{exc.kind}: "),
                                 transport="kafka") from exc
        self._publisher = publisher

    async def close(self) -> None:
        if self._dead_letters is not None:
            await self._dead_letters.close()
        await self.tasks.aclose()
        for task in self._created.values():
            task.cancel()
        await asyncio.gather(*self._created.values(), return_exceptions=True)
        publisher, self._publisher = self._publisher, None
        admin, self._admin = self._admin, None
        if publisher is not None:
            await publisher.stop()
        if admin is not None:
            await admin.close()

    def topic_backend(self, name: str) -> KafkaTopic:
        return KafkaTopic(name, kafka_name(name, self.namespace), self)

    def adapt_subscriber(self, target: object) -> Subscriber | None:
        return None

    def adapt_operator(self, target: object) -> Processor | None:
        return None

    # what topics use

    def writer(self, topic: str) -> TopicWriter:
        """A writer of Kafka topic ``topic`` on the shared producer."""
        if self._publisher is None or self._publisher._producer is None:
            raise TransportError("the bus is not open", transport="kafka")
        update: dict[str, Any] = {"topic": topic}
        if topic == self._dead_letter_topic:
            update["serializer"] = encode_dead_letter
        config = self._sink_config.model_copy(update=update)
        writer = TopicWriter(config, self._publisher._producer, self.home)
        writer.ends = self.published.setdefault(topic, {})
        return writer

    def decoders(self, topic: str) -> Decoders:
        """How records of Kafka topic ``topic`` decode: (value, key)."""
        if topic == self._dead_letter_topic:
            return value_codec("pickle")[1], self._decode_key
        return self._decode, self._decode_key

    async def ensure_topic(self, topic: str) -> None:
        """Create Kafka topic ``topic`` unless it exists (once per transport)."""
        creating = self._created.get(topic)
        if creating is None or (creating.done() and creating.exception() is not None):
            creating = self._created[topic] = asyncio.get_running_loop().create_task(
                self._create(topic), name=f"kafka:create:{topic}")
        await asyncio.shield(creating)

    async def _create(self, topic: str) -> None:
        if self._admin is None:
            raise TransportError("the bus is not open", transport="kafka")
        try:
            response = await self._admin.create_topics(
                [NewTopic(topic, self.partitions, self.replication_factor)])
        except KafkaError as exc:
            raise TransportError(f"creating topic {topic!r}: {describe(exc)}",
                                 transport="kafka") from exc
        for _, code, message in response.topic_errors:
            if code not in (0, _ALREADY_EXISTS):
                raise TransportError(f"creating topic {topic!r}: error {code} ({message})",
                                     transport="kafka")

    async def dead_letters(self, origin: str, letters: list[DeadLetter]) -> None:
        """Publish ``letters`` to the dead-letter topic (logged if that is where they came
        from, or if they cannot be written there)."""
        if origin == DEAD_LETTERS:
            for letter in letters:
                log.error("a dead letter could not be published to %r: %s", DEAD_LETTERS,
                          letter.error)
            return
        if self._dead_letters is None:
            self._dead_letters = self.topic_backend(DEAD_LETTERS)
        await self._dead_letters.publish([Event(letter) for letter in letters])

    # streams

    async def run_job(self, plan: JobPlan, ctx: StageContext) -> JobBackend:
        for topic in sorted(plan.topics_used()):
            await self.ensure_topic(kafka_name(topic, self.namespace))
        groups: set[str] = set()
        for stage in plan.stages:
            reader = stage.reader
            if isinstance(reader, TopicReader):
                group = self._group(plan.name, reader.topic, groups)
                stage.reader = TopicStreamReader(self._topic_source(reader.topic, group))
        return await LocalJob(plan, ctx).start()

    def _group(self, job: str, topic: str, taken: set[str]) -> str:
        prefix = f"{self.namespace}." if self.namespace else ""
        group = base = f"{prefix}eventray.{job}.{topic}"
        count = 1
        while group in taken:  # the same topic read twice in one job: two groups
            count += 1
            group = f"{base}.{count}"
        taken.add(group)
        return group

    def _topic_source(self, topic: str, group: str) -> KafkaSource:
        name = kafka_name(topic, self.namespace)
        config = self._source_config.model_copy(update={
            "topic": name, "group_id": group, "deserializer": self.decoders(name)[0]})
        return TopicSource(config, self.published)


class TopicStreamReader(ConnectorReader):
    """A stream's reader of a ``kafka://`` topic: its records may be dead letters."""

    def failed(self, event: Any) -> bool:
        return type(event.value) is Undecodable

    async def drain(self, max_records: int) -> Batch | None:
        """Read on until what this bus published to the topic is read (also when the
        stage had not read yet)."""
        if isinstance(self.source, TopicSource) and self.source.has_drain_targets():
            return await self.read(max_records)
        return await super().drain(max_records)


class TopicSource(KafkaSource):
    """A ``kafka-source`` reading a topic for a stream: a drain first reads what this bus
    published to it (a graceful close loses nothing a publish accepted)."""

    letter_type = Undecodable

    def __init__(self, config: KafkaSourceConfig, published: dict[str, dict[int, int]]):
        super().__init__(config)
        self._published = published

    def _sibling(self) -> TopicSource:
        return TopicSource(self.config, self._published)

    def has_drain_targets(self) -> bool:
        return bool(self._drain_targets())

    def _drain_targets(self) -> dict[TopicPartition, int]:
        topic = self.config.topics[0]
        return {TopicPartition(topic, partition): end
                for partition, end in self._published.get(topic, {}).items()}

