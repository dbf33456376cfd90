"""``kafka-source``: records of Kafka topics as events, read in batches with ``getmany``.

Positions. The source's position is, per partition, the offset of the next record to hand
out: ``read`` advances it past every record it returns, so ``snapshot`` (taken between reads)
covers exactly what the stream was given. ``restore`` seeks there. ``commit(state)`` commits
the offsets of a snapshot to the consumer group: the runtime calls it once a checkpoint
holding that snapshot is durable. Offsets are never auto-committed. When nothing called
``commit`` during a run and the source was drained (``stop_reading``, then ``read`` returned
None), ``stop`` commits what was handed out (``commit_on_drain``).

Rebalances. Revoked partitions commit nothing: whoever gets them next starts from the last
committed offset, so a record handed out but not yet committed is read again (at-least-once),
and none is skipped. A partition this source keeps through a rebalance continues where it
was (aiokafka would otherwise rewind it to the committed offset). ``commit`` only commits
partitions the source still owns.

Bad input. A record whose value (or key) does not decode comes back from ``read`` as an
event whose value is an ``er.DeadLetter`` naming the topic, partition and offset; the
stream sends it to the dead-letter topic and goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from eventray import BaseSource, ConfigError, ConnectorError, DeadLetter, Event
from eventray.spi import describe

from ._client import connection_options, start_client, translate
from ._config import KafkaSourceConfig
from ._formats import decode_headers, decoder

log = logging.getLogger("eventray")

Positions = dict[TopicPartition, int]


def positions_state(positions: Mapping[TopicPartition, int]) -> dict[str, dict[int, int]]:
    """Positions as a snapshot: ``{topic: {partition: next offset}}``."""
    state: dict[str, dict[int, int]] = {}
    for tp, offset in sorted(positions.items()):
        state.setdefault(tp.topic, {})[tp.partition] = offset
    return state


def state_positions(state: Any) -> Positions:
    """A snapshot as positions (None: no position)."""
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise TypeError(f"a kafka-source position is a dict of topics, not {state!r:.80}")
    return {TopicPartition(topic, int(partition)): int(offset)
            for topic, offsets in state.items() for partition, offset in offsets.items()}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called by aiokafka around a rebalance (the first assignment happens while ``start``
    still runs, so the listener holds the consumer itself)."""

    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self.source = source
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.source._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.source._assigned(assigned, self.consumer)


class KafkaSource(BaseSource[KafkaSourceConfig]):
    """One event per record: value decoded by ``value_format`` (or ``deserializer``), key by
    ``key_format``, ``ts`` the record's timestamp, ``headers`` its headers and ``position``
    ``(topic, partition, offset)``."""

    kind = "kafka-source"
    config_type = KafkaSourceConfig
    letter_type = DeadLetter  # what a record that does not decode comes back as

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._decode = decoder(self.config.value_format, self.config.deserializer)
        self._decode_key = self.config.key_deserializer or decoder(self.config.key_format)
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: Positions = {}  # next offset to hand out, per owned partition
        self._restored: Positions = {}  # from restore(), applied at the next assignment
        self._kept: Positions = {}  # positions of partitions revoked by a rebalance in progress
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._drained = False
        self.commits = 0  # commit() calls that reached the group
        self.committed: Positions = {}  # what this source last committed, per partition
        self.dead_letters = 0

    @property
    def assignment(self) -> set[TopicPartition]:
        """The partitions this source owns now (none before ``start`` or in a rebalance)."""
        consumer = self._consumer
        return set(consumer.assignment()) if consumer is not None else set()

    def split(self, index: int, count: int) -> KafkaSource:
        """The source of one of ``count`` instances: a member of the same consumer group (the
        group shares the partitions between its members). Instances split in one process
        share what they restored and where revoked partitions were, so a partition that
        moves between them continues exactly where it was."""
        if self.config.group_id is None:
            raise ConfigError("set a group_id to read with more than one instance: the "
                              "members of a consumer group share its partitions",
                              kind=self.kind, field="group_id")
        sibling = self._sibling()
        sibling._restored, sibling._kept = self._restored, self._kept
        return sibling

    def _sibling(self) -> KafkaSource:
        return type(self)(self.config)

    def _options(self) -> dict[str, Any]:
        config = self.config
        return dict(
            connection_options(config),
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if config.from_beginning else "latest",
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_partition_fetch_bytes=config.max_partition_fetch_bytes,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
        )

    def _make_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**self._options())
        topics = self.config.topics
        if self.config.group_id is None:
            consumer.subscribe(topics)  # no group: every partition is this source's
        else:
            consumer.subscribe(topics, listener=_Rebalance(self, consumer))
        return consumer

    async def start(self) -> None:
        """Connect (retrying ``connect_retries`` times), join the group and wait for its
        partitions; a clear ``ConnectorError`` if the brokers cannot be reached. A drain
        (``stop_reading``) while joining gives up the join: nothing was read yet."""
        if self._consumer is not None or self._stop_requested.is_set():
            return
        starting = asyncio.ensure_future(start_client(
            self._make_consumer, self.config, kind=self.kind,
            timeout=self.config.start_timeout_ms / 1000))
        stopping = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: no consumer may outlive this
            cleanup = asyncio.ensure_future(_abandon(starting))
            while not cleanup.done():  # finish it even if cancelled again meanwhile
                try:
                    await asyncio.shield(cleanup)
                except asyncio.CancelledError:
                    continue
            raise
        finally:
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
        if not starting.done() or self._stop_requested.is_set():  # a drain began: not needed
            await _abandon(starting)
            return
        self._consumer = starting.result()
        if self.config.group_id is None:
            self._assigned(set(self._consumer.assignment()), self._consumer)

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        """A rebalance begins: nothing is committed; remember where kept partitions were."""
        for tp in revoked:
            if tp in self._positions:
                self._kept[tp] = self._positions.pop(tp)
        if revoked:
            log.info("%s: partitions revoked: %s", self.kind, _names(revoked))

    def _assigned(self, assigned: set[TopicPartition], consumer: AIOKafkaConsumer) -> None:
        """Partitions assigned: seek restored ones to their checkpoint, kept ones to where
        they were; the rest start from the group's committed offset."""
        for tp in assigned:
            offset = self._restored.pop(tp, None)
            kept = self._kept.pop(tp, None)
            if offset is None:
                offset = kept
            if offset is not None:
                consumer.seek(tp, offset)
                self._positions[tp] = offset
        if assigned:
            log.info("%s: partitions assigned: %s", self.kind, _names(assigned))

    def _drain_targets(self) -> dict[TopicPartition, int]:
        """Offsets a drain reads up to before it ends (none: it ends at once)."""
        return {}

    async def _behind(self) -> bool:
        """Whether a partition this source owns is short of its drain target."""
        consumer = self._consumer
        if consumer is None:
            return False
        owned = consumer.assignment()
        for tp, end in self._drain_targets().items():
            if tp in owned:
                position = self._positions.get(tp)
                if position is None:
                    position = await consumer.position(tp)
                if position < end:
                    return True
        return False

    async def read(self, max_events: int) -> Sequence[Event] | None:
        if self._stopping and not await self._behind():
            self._drained = True
            return None
        if self._consumer is None:
            await self.start()
            if self._consumer is None:  # a drain began while joining
                self._drained = True
                return None
        try:
            batches = await self._consumer.getmany(timeout_ms=self.config.poll_timeout_ms,
                                                   max_records=max_events)
        except KafkaError as exc:
            raise translate(exc, self.kind, "reading failed") from exc
        events: list[Event] = []
        positions = self._positions
        for tp, records in batches.items():
            events.extend(self._events(records))
            positions[tp] = records[-1].offset + 1
        return events

    def _events(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Event]:
        letter = self.letter_type
        events = record_events(records, self._decode, self._decode_key, self.kind, letter)
        self.dead_letters += sum(type(event.value) is letter for event in events)
        return events

    def stop_reading(self) -> None:
        """A drain: the read in progress returns what it fetched, later reads None (once
        the drain targets, if any, are reached; without any, a join in progress ends)."""
        self._stopping = True
        if not self._drain_targets():
            self._stop_requested.set()

    def snapshot(self) -> dict[str, dict[int, int]]:
        """``{topic: {partition: next offset}}`` of what was handed out, per partition this
        source owns."""
        return positions_state(self._positions)

    def restore(self, state: Any) -> None:
        """Resume from a ``snapshot``: owned partitions seek there now, others when they are
        assigned to this source or a sibling (the first time only; later they start from
        where their last owner was, or from the committed offset)."""
        self._restored.update(state_positions(state))
        if self._consumer is not None:
            owned = set(self._consumer.assignment())
            self._assigned(owned & set(self._restored), self._consumer)

    async def commit(self, state: Any) -> None:
        """Commit exactly the offsets of ``state`` (a snapshot) for the partitions this source
        still owns; without a group there is nothing to commit to."""
        consumer = self._consumer
        if consumer is None or self.config.group_id is None:
            return
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in state_positions(state).items()
                   if tp in owned and self.committed.get(tp) != offset}
        self.commits += 1
        if not offsets:
            return
        try:
            async with asyncio.timeout(self.config.request_timeout_ms / 1000):
                await consumer.commit(offsets)
        except KafkaError as exc:
            raise translate(exc, self.kind, f"committing {_names(offsets)}") from exc
        except TimeoutError as exc:  # a later commit covers these offsets
            raise ConnectorError(f"committing {_names(offsets)} took more than "
                                 f"{self.config.request_timeout_ms} ms", kind=self.kind,
                                 retriable=True) from exc
        self.committed.update(offsets)

    async def stop(self) -> None:
        """Commit what was handed out if the source was drained and nothing else committed
        (``commit_on_drain``), then leave the group and close."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            if self._drained and self.config.commit_on_drain and self.commits == 0:
                self._consumer = consumer
                try:
                    await self.commit(self.snapshot())
                except ConnectorError as exc:  # the next run reads these records again
                    log.warning("%s: the drain's commit failed: %s", self.kind, exc)
                finally:
                    self._consumer = None
        finally:
            await consumer.stop()


def record_events(records: list[ConsumerRecord[bytes, bytes]], decode: Callable[[bytes], Any],
                  decode_key: Callable[[bytes], Any], kind: str,
                  letter: type[DeadLetter] = DeadLetter) -> list[Event]:
    """One event per record; a record that does not decode is an event whose value is a
    ``letter`` (a ``DeadLetter``) naming its topic, partition and offset."""
    events = []
    for record in records:
        position = (record.topic, record.partition, record.offset)
        value, key = record.value, record.key
        try:
            events.append(Event(
                decode(value) if value is not None else None,
                decode_key(key) if key is not None else None,
                record.timestamp,
                decode_headers(record.headers) if record.headers else None,
                position,
            ))
        except Exception as exc:
            where = f"topic {record.topic!r}, partition {record.partition}, " \
                    f"offset {record.offset}"
            failure = letter(value, f"{describe(exc)} ({where})", kind, key, record.timestamp)
            events.append(Event(failure, key, record.timestamp, None, position))
    return events


async def _abandon(starting: asyncio.Future[AIOKafkaConsumer]) -> None:
    """Cancel a consumer's start; stop the consumer if it started all the same."""
    starting.cancel()
    outcome = (await asyncio.gather(starting, return_exceptions=True))[0]
    if isinstance(outcome, AIOKafkaConsumer):
        await outcome.stop()


def _names(partitions: Any) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))
