"""``satellite-source``: packets from the Swarm Hive API as events, acknowledged only once safe.

Polling. Every ``period`` ms (the core's ``PollingSource`` loop: a failing gateway backs off
with jitter and is retried, never ending the stage) it asks for packets not yet acknowledged
(``GET /api/v1/messages?count=&status=0``), page after page (``startPacketId`` past the last
one) until a page has fewer than ``count`` packets, the start id does not advance (a gateway
ignoring ``startPacketId``) or enough pages were read to pass every packet waiting for its
acknowledgement and fill the poll. One event per packet: ``{"packet_id", "device_id", "data"
(bytes), "received_at"}``, keyed by the device id, at the packet's Hive receive time. A packet
with an integer ``packetId`` but a malformed field (data not base64, a device id that is not
an integer, a receive time that is not a time) is a dead letter naming what was wrong, and
acknowledged like any other once safe, so it does not come back forever; a packet without an
integer ``packetId`` cannot be acknowledged, so it is logged (once) and skipped. The rest of
the page is delivered either way.

Acknowledging. The gateway hands a packet out again until it is acknowledged (``POST
/api/v1/messages/rxack/{packetId}``), so acknowledging is what must wait: ``snapshot`` (taken
between reads, only when checkpoints are on) lists the packets handed to the stream and not
yet acknowledged, and ``commit`` of that snapshot, which the runtime calls once the
checkpoint holding it is durable, acknowledges them. A restored source acknowledges the
packets of the checkpoint it resumes from (they are safe in it) and drops them if they come
again. With checkpoints off (``snapshot`` never called), the packets are acknowledged when the
drained source stops: after a drain the stream has handed them on. A crash before that leaves
them unacknowledged, so they come again (at-least-once: never lost).

Duplicates. A packet id already handed out, waiting in the buffer, or among the last
``dedup_window`` acknowledged ones is dropped. At most ``max_unacked`` packets wait for their
acknowledgement; beyond that polling pauses (with a warning) until a checkpoint commits.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventray import ConnectorError, DeadLetter, Event, PollingSource
from eventray.spi import describe

from ._config import SatelliteSourceConfig
from ._hive import HiveClient, HiveError

log = logging.getLogger("eventray")


_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time a datetime holds


def _received_ms(value: Any) -> int:
    """Milliseconds since the epoch of a Hive time (ISO 8601, or a number of ms);
    ``ValueError`` naming the value if it is neither (NaN, infinite, out of range)."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ms = int(value)
        elif isinstance(value, str):
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            ms = int(when.timestamp() * 1000)
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"hiveRxTime {value!r:.60} is not a time") from None
    if not -_MAX_MS <= ms <= _MAX_MS:
        raise ValueError(f"hiveRxTime {value!r:.60} is out of range")
    return ms


class SatelliteSource(PollingSource[SatelliteSourceConfig]):
    """Polls the Hive API for packets; each is acknowledged only after a durable checkpoint
    holds it (or, with checkpoints off, when the drained source stops)."""

    kind = "satellite-source"
    config_type = SatelliteSourceConfig
    empty_reads = True  # a quiet gateway must not hold checkpoints (and acks) back

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        config = self.config
        self.interval = config.period / 1000
        pages = -(-config.max_per_poll // config.page_size) + 1
        self.poll_timeout = config.timeout * (pages + 1)  # each request has its own timeout
        self._client: HiveClient | None = None
        self._buffered: set[int] = set()  # polled, waiting in the buffer for a read
        self._handed: OrderedDict[int, None] = OrderedDict()  # read by the stream, not acked
        self._acked: OrderedDict[int, None] = OrderedDict()  # the last dedup_window acked
        self._restored: list[int] = []  # safe in the checkpoint resumed from: ack them
        self._checkpointed = False  # snapshot was called: checkpoints are on
        self._drained = False
        self._paused = False
        self.received = 0  # packets handed to the stream
        self.duplicates = 0  # packets the gateway gave again, dropped
        self.acks = 0  # packets acknowledged
        self.dead_letters = 0  # malformed packets with a packet id, handed as dead letters
        self.malformed = 0  # packets without an integer packet id, logged and skipped
        self._skipped: OrderedDict[str, None] = OrderedDict()  # logged already
        self._start_ignored = False

    @property
    def unacked(self) -> list[int]:
        """Ids of packets handed to the stream and not acknowledged yet."""
        return list(self._handed)

    @property
    def logins(self) -> int:
        """How many times this source logged in (again after an expired session)."""
        return self._client.logins if self._client is not None else 0

    def _hive(self) -> HiveClient:
        if self._client is None:
            self._client = HiveClient(self.config, self.kind)
        return self._client

    async def start(self) -> None:
        self._hive()

    def _known(self, packet_id: int) -> bool:
        return packet_id in self._handed or packet_id in self._buffered \
            or packet_id in self._acked

    async def poll(self) -> Sequence[Event]:
        client = self._hive()
        if self._restored:
            await self._ack(client, self._restored)
        config = self.config
        room = min(config.max_per_poll, config.max_unacked - len(self._handed)
                   - len(self._buffered))
        if room <= 0:
            if not self._paused:
                log.warning("%s: %d packets wait for a checkpoint to acknowledge them; "
                            "polling paused", self.kind, len(self._handed))
            self._paused = True
            return []
        self._paused = False
        events: list[Event] = []
        ids: list[int] = []
        start: int | None = None
        # enough pages to pass every packet still handed out to us and fill the poll
        waiting = len(self._handed) + len(self._buffered)
        pages = -(-(room + waiting) // config.page_size) + 1
        for _ in range(pages):
            params: dict[str, Any] = {"count": config.page_size, "status": 0}
            if config.device_id is not None:
                params["deviceid"] = config.device_id
            if start is not None:
                params["startPacketId"] = start
            page = await client.request("GET", "/api/v1/messages", params=params)
            if not isinstance(page, list):
                raise ConnectorError(f"GET /api/v1/messages answered {page!r:.120}, not a "
                                     "list of packets", kind=self.kind, retriable=True)
            last = None
            for packet in page:
                packet_id = packet.get("packetId") if isinstance(packet, dict) else None
                if not isinstance(packet_id, int) or isinstance(packet_id, bool):
                    self._skip(packet)
                    continue
                last = packet_id if last is None else max(last, packet_id)
                if self._known(packet_id) or packet_id in ids:
                    self.duplicates += 1
                    continue
                ids.append(packet_id)
                events.append(self._event(packet_id, packet))
            if len(page) < config.page_size or len(events) >= room:
                break
            if last is None or (start is not None and last < start):
                self._warn_start_ignored()  # the next page would be this one again
                break
            start = last + 1
        self._buffered.update(ids)  # no await after this: the poll cannot be cut here
        return events

    def _skip(self, packet: Any) -> None:
        """A packet without an integer ``packetId`` cannot be acknowledged: it is logged
        (once, if it comes again) and skipped."""
        self.malformed += 1
        text = f"{packet!r:.200}"
        if text in self._skipped:
            return
        self._skipped[text] = None
        while len(self._skipped) > 1000:
            self._skipped.popitem(last=False)
        log.error("%s: skipped a packet without an integer packetId (it cannot be "
                  "acknowledged, so the gateway may hand it out again): %s", self.kind, text)

    def _warn_start_ignored(self) -> None:
        if not self._start_ignored:
            log.warning("%s: the gateway ignored startPacketId (a page brought no packet "
                        "past the last one); this poll stops paging", self.kind)
        self._start_ignored = True

    def _event(self, packet_id: int, packet: dict[str, Any]) -> Event:
        """The packet as an event, or as a dead letter naming what is malformed in it."""
        device_id = packet.get("deviceId")
        if not isinstance(device_id, int) or isinstance(device_id, bool):
            return self._dead_letter(packet_id, packet,
                                     f"deviceId {device_id!r:.60} is not an integer")
        received: int | None = None
        if packet.get("hiveRxTime") is not None:
            try:
                received = _received_ms(packet["hiveRxTime"])
            except ValueError as exc:
                return self._dead_letter(packet_id, packet, str(exc), device_id)
        try:
            data = base64.b64decode(packet.get("data") or "", validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            return self._dead_letter(packet_id, packet,
                                     f"data is not base64 ({describe(exc)})", device_id,
                                     received)
        value = {"packet_id": packet_id, "device_id": device_id, "data": data,
                 "received_at": packet.get("hiveRxTime")}
        if received is None:
            return Event(value, device_id, position=packet_id)
        return Event(value, device_id, received, position=packet_id)

    def _dead_letter(self, packet_id: int, packet: dict[str, Any], why: str,
                     device_id: int | None = None, received: int | None = None) -> Event:
        """A dead letter for a malformed packet; its id is acknowledged once safe, like any
        packet's, so the gateway stops handing it out."""
        self.dead_letters += 1
        letter = DeadLetter(packet, f"packet {packet_id}: {why}", self.kind, device_id,
                            received)
        return Event(letter, device_id, position=packet_id)

    async def read(self, max_events: int) -> Sequence[Event] | None:
        events = await super().read(max_events)
        if events is None:
            self._drained = True
            return None
        for event in events:
            packet_id = event.position
            self._buffered.discard(packet_id)
            self._handed[packet_id] = None
        self.received += len(events)
        return events

    def snapshot(self) -> dict[str, list[int]]:
        """``{"unacked": [packet ids]}``: what the stream was handed and is not acknowledged."""
        self._checkpointed = True
        return {"unacked": list(self._handed)}

    def restore(self, state: Any) -> None:
        """Resume from a checkpoint: its packets are safe, so they are acknowledged (at the
        next poll) and dropped if the gateway hands them out again."""
        ids = list(state.get("unacked", [])) if isinstance(state, dict) else []
        self._checkpointed = True
        self._restored = ids
        for packet_id in ids:
            self._remember(packet_id)

    async def commit(self, state: Any) -> None:
        """A checkpoint holding ``state`` is durable: acknowledge its packets."""
        ids = [i for i in (state or {}).get("unacked", []) if i in self._handed]
        if not ids:
            return
        if self._client is not None:
            await self._ack(self._client, ids)
            return
        client = HiveClient(self.config, self.kind)  # stopped before its final checkpoint
        try:  # completed: acknowledge with a session of its own
            await self._ack(client, ids)
        finally:
            await client.close()

    async def _ack(self, client: HiveClient, ids: list[int]) -> None:
        """Acknowledge ``ids``; those that fail stay to be acknowledged with a later commit."""
        failed: list[tuple[int, str]] = []
        for packet_id in ids:
            try:
                await client.request("POST", f"/api/v1/messages/rxack/{packet_id}",
                                     need_json=False)
            except HiveError as exc:
                if exc.status != 404:
                    failed.append((packet_id, describe(exc)))
                    continue
                log.warning("%s: the gateway does not know packet %d (acknowledged "
                            "already?): %s", self.kind, packet_id, describe(exc))
            except Exception as exc:
                failed.append((packet_id, describe(exc)))
                continue
            self.acks += 1
            self._handed.pop(packet_id, None)
            self._remember(packet_id)
        acked = set(ids) - {packet_id for packet_id, _ in failed}
        self._restored = [i for i in self._restored if i not in acked]
        if failed:
            raise ConnectorError(f"{len(failed)} packet(s) not acknowledged, first "
                                 f"{failed[0][0]}: {failed[0][1]}; they will be with a later "
                                 "checkpoint", kind=self.kind, retriable=True)

    def _remember(self, packet_id: int) -> None:
        self._acked[packet_id] = None
        self._acked.move_to_end(packet_id)
        while len(self._acked) > self.config.dedup_window:
            self._acked.popitem(last=False)

    async def close(self) -> None:
        """With checkpoints off, a drained source acknowledges what it handed out; then the
        session closes. A source stopped without a drain acknowledges nothing."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._drained and not self._checkpointed and self._handed:
                await self._ack(client, list(self._handed))
        finally:
            await client.close()
