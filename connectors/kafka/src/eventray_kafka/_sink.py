"""``kafka-sink``: events as records, written a batch per partition at a time.

``write`` serializes the whole batch, appends its records to one aiokafka ``BatchBuilder``
per partition (keyed records by the Java client's murmur2 partitioner, unkeyed ones all to
one partition, taken in turn), hands those builders to the producer (``send_batch``) and
waits for the brokers to acknowledge them, once per batch, never once per record. A batch
that fails for a reason that may pass (a broker away, a timeout) is sent again with backoff
until ``delivery_timeout_ms``, so a broker that goes away for a while loses nothing (a retry
may write a record twice, and may reorder it after later records of its partition). A
value that does not serialize, a key field that is missing, a record over
``max_request_size``, or a batch the brokers refuse for good is a dead letter for those
events only; the rest of the batch counts as written, and is durable when ``write``
returns.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from eventray import BaseSink, Event, RejectedEvents
from eventray.spi import describe

from ._client import connection_options, start_client, translate
from ._config import KafkaSinkConfig
from ._formats import encode_headers, encode_key, encoder

_partition_of = DefaultPartitioner()
log = logging.getLogger("eventray")

# a record ready to send: (index in the batch, key, value, timestamp, headers)
_Entry = tuple[int, bytes | None, bytes | None, int, Any]
# a batch sent to a partition, its records and the future of its acknowledgement
_Sent = tuple[int, list[_Entry], "asyncio.Future[Any]"]
_TRANSIENT = (KafkaTimeoutError, KafkaConnectionError, NodeNotReadyError,
              RequestTimedOutError)


def _retriable(error: KafkaError) -> bool:
    return bool(getattr(error, "retriable", False)) or isinstance(error, _TRANSIENT)


def _key_function(key: str | Callable[[Any], Any] | None) -> Callable[[Event], Any]:
    if key is None:
        return lambda event: event.key
    if callable(key):
        return lambda event: key(event.value)

    def field(event: Event) -> Any:
        value = event.value
        if isinstance(value, dict):
            if key not in value:
                raise KeyError(f"the value has no field {key!r} for the record key")
            return value[key]
        try:
            return getattr(value, key)
        except AttributeError:
            raise KeyError(f"the value has no field {key!r} for the record key") from None

    return field


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"the serializer returned a {type(value).__name__}, not bytes")


class KafkaSink(BaseSink[KafkaSinkConfig]):
    """Writes one record per event to ``topic``; ``flush`` waits for the producer."""

    kind = "kafka-sink"
    config_type = KafkaSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._encode = encoder(self.config.value_format, self.config.serializer)
        self._key_of = _key_function(self.config.key)
        self._encode_key = self.config.key_serializer or encode_key
        self._producer: AIOKafkaProducer | None = None
        self._unkeyed = itertools.count()
        self._partitions: dict[bytes, int] = {}  # murmur2 is slow in Python: keys repeat
        self._partitioned_for: list[int] = []
        self.records = 0  # records the brokers acknowledged
        self.batches = 0  # partition batches sent
        self.retries = 0  # rounds of sending again what the brokers did not acknowledge
        self.ends: dict[int, int] = {}  # per partition, the offset after the last record
        # the brokers acknowledged

    def _make_producer(self) -> AIOKafkaProducer:
        config = self.config
        return AIOKafkaProducer(
            **connection_options(config),
            acks=config.acks,
            compression_type=config.compression_type,
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_size,
            max_request_size=config.max_request_size,
            enable_idempotence=config.enable_idempotence,
        )

    async def start(self) -> None:
        """Connect (retrying ``connect_retries`` times); a clear ``ConnectorError`` if the
        brokers cannot be reached."""
        if self._producer is None:
            self._producer = await start_client(self._make_producer, self.config,
                                                kind=self.kind,
                                                timeout=self.config.request_timeout_ms / 1000)

    async def write(self, batch: Sequence[Event]) -> None:
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        topic = self.config.topic
        try:
            partitions = sorted(await producer.partitions_for(topic))
        except KafkaError as exc:
            raise translate(exc, self.kind, f"no metadata for topic {topic!r}") from exc
        failures: list[tuple[int, str]] = []
        records = self._records(batch, partitions, failures)
        sent: list[_Sent] = []
        for partition, entries in records.items():
            await self._send(producer, partition, entries, sent)
        await self._acknowledged(producer, sent, failures)
        if failures:
            raise RejectedEvents(sorted(failures), kind=self.kind)

    async def _acknowledged(self, producer: AIOKafkaProducer, sent: list[_Sent],
                            failures: list[tuple[int, str]]) -> None:
        """Wait for the brokers' acknowledgements. Batches that failed for a reason that may
        pass (a broker away, a timeout, a leader moving) are sent again with backoff until
        ``delivery_timeout_ms``; what still fails is added to ``failures``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.delivery_timeout_ms / 1000
        attempt = 0
        while sent:
            again: list[tuple[int, list[_Entry]]] = []
            error = ""
            for partition, entries, future in sent:
                try:
                    metadata = await future
                except KafkaError as exc:
                    error = f"{describe(exc)} (topic {self.config.topic!r})"
                    if _retriable(exc) and loop.time() < deadline:
                        again.append((partition, entries))
                    else:
                        failures.extend((entry[0], error) for entry in entries)
                else:
                    self.records += len(entries)
                    end = metadata.offset + len(entries)
                    if end > self.ends.get(partition, 0):
                        self.ends[partition] = end
            sent = []
            if not again:
                return
            attempt += 1
            self.retries += 1
            wait = min(self.config.retry_backoff_ms / 1000 * 2**attempt, 5.0)
            wait = min(random.uniform(wait / 2, wait), max(0.0, deadline - loop.time()))
            log.warning("%s: %d record(s) not acknowledged (%s); sending them again in "
                        "%.2fs", self.kind, sum(len(e) for _, e in again), error, wait)
            await asyncio.sleep(wait)
            for partition, entries in again:
                await self._send(producer, partition, entries, sent)

    def _records(self, batch: Sequence[Event], partitions: list[int],
                 failures: list[tuple[int, str]]) -> dict[int, list[_Entry]]:
        """Each event serialized, as (index, key, value, ts, headers), by partition."""
        encode, key_of, extra = self._encode, self._key_of, self.config.headers
        limit = self.config.max_request_size // 2
        if len(self._partitions) > 10_000 or self._partitioned_for != partitions:
            self._partitions, self._partitioned_for = {}, partitions
        by_key = self._partitions
        unkeyed = self._unkeyed_partition(partitions)
        out: dict[int, list[_Entry]] = {}
        for index, event in enumerate(batch):
            try:
                value = encode(event.value)
                if value is not None and type(value) is not bytes:
                    value = _as_bytes(value)
                key = self._encode_key(key_of(event))
                headers = encode_headers(event.headers, extra) if event.headers or extra \
                    else None
                ts = event.ts if type(event.ts) is int else int(event.ts)
                if value is not None and len(value) > limit:
                    self._check_size(key, value, headers)
            except Exception as exc:
                failures.append((index, describe(exc)))
                continue
            if key is None:
                partition = unkeyed
            else:
                partition = by_key.get(key, -1)
                if partition < 0:
                    partition = by_key[key] = _partition_of(key, partitions, partitions)
            out.setdefault(partition, []).append((index, key, value, ts, headers))
        return out

    def _unkeyed_partition(self, partitions: list[int]) -> int:
        """Where this batch's records without a key go: the partitions in turn."""
        return partitions[next(self._unkeyed) % len(partitions)]

    def _check_size(self, key: bytes | None, value: bytes, headers: Any) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > self.config.max_request_size:
            raise ValueError(f"the record is {size} bytes, over max_request_size "
                             f"({self.config.max_request_size})")

    async def _send(self, producer: AIOKafkaProducer, partition: int,
                    entries: list[_Entry], sent: list[_Sent]) -> None:
        """Append ``entries`` to builders of at most ``max_batch_size`` bytes and send each."""
        builder = producer.create_batch()
        chunk: list[_Entry] = []
        for entry in entries:
            _, key, value, ts, headers = entry
            if builder.append(key=key, value=value, timestamp=ts, headers=headers) is None:
                if chunk:
                    sent.append((partition, chunk, await self._submit(producer, builder,
                                                                      partition)))
                builder, chunk = producer.create_batch(), []
                builder.append(key=key, value=value, timestamp=ts, headers=headers)
            chunk.append(entry)
        if chunk:
            sent.append((partition, chunk, await self._submit(producer, builder, partition)))

    async def _submit(self, producer: AIOKafkaProducer, builder: Any,
                      partition: int) -> asyncio.Future[Any]:
        try:
            future: asyncio.Future[Any] = await producer.send_batch(
                builder, self.config.topic, partition=partition)
        except KafkaError as exc:
            raise translate(exc, self.kind, "sending failed") from exc
        self.batches += 1
        return future

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged (``write`` already does)."""
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
