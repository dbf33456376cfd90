"""``satellite-sink``: events ``{"device_id", "data"}`` sent to devices through the Hive API."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from eventray import BaseSink, ConnectorError, Event, RejectedEvents
from eventray.spi import describe

from ._config import SatelliteSinkConfig
from ._hive import HiveClient

log = logging.getLogger("eventray")


class SatelliteSink(BaseSink[SatelliteSinkConfig]):
    """Posts ``{"deviceType", "deviceId", "userApplicationId", "data"}`` (data in base64) to
    ``POST /api/v1/messages`` per event, in order, logged in (again on 401). 5xx, 429,
    timeouts and refused connections are retried ``retries`` times with backoff; a value that
    is not ``{"device_id": int, "data": bytes | str}``, data over ``max_data`` bytes, another
    4xx, or retries run out make that event a dead letter; the rest of the batch is sent.
    Any 2xx answer means sent (a body that is not JSON is logged), so it is never repeated."""

    kind = "satellite-sink"
    config_type = SatelliteSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._client: HiveClient | None = None
        self.sent: list[int] = []  # packet ids the Hive API gave the messages sent
        self.retries = 0

    async def start(self) -> None:
        if self._client is None:
            self._client = HiveClient(self.config, self.kind)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _payload(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"expected {{'device_id', 'data'}}, got {value!r:.80}")
        device_id, data = value.get("device_id"), value.get("data")
        if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
            raise ValueError(f"device_id must be a non-negative int, got {device_id!r:.40}")
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ValueError(f"data must be non-empty bytes or str, got {data!r:.40}")
        if len(data) > self.config.max_data:
            raise ValueError(f"data is {len(data)} bytes, over max_data "
                             f"({self.config.max_data})")
        return {"deviceType": self.config.device_type, "deviceId": device_id,
                "userApplicationId": self.config.application_id,
                "data": base64.b64encode(bytes(data)).decode("ascii")}

    async def _send(self, payload: dict[str, Any]) -> str | None:
        """Send one message, retrying what may pass; None once sent, else why not."""
        await self.start()
        assert self._client is not None
        config = self.config
        error = "not sent"
        for attempt in range(config.retries + 1):
            try:
                # a 2xx is sent, whatever its body: sending again would repeat the message
                answer = await self._client.request("POST", "/api/v1/messages", body=payload,
                                                    need_json=False)
            except ConnectorError as exc:  # an HTTP error
                if not exc.retriable:
                    return describe(exc)  # the request itself is wrong: retrying won't help
                error = describe(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = describe(exc)
            else:
                if isinstance(answer, dict) and isinstance(answer.get("packetId"), int):
                    self.sent.append(answer["packetId"])
                return None
            if attempt < config.retries:
                self.retries += 1
                wait = random.uniform(0, min(config.backoff_max,
                                             config.backoff_initial * 2**attempt))
                log.warning("%s: sending failed (%s); retrying in %.2fs", self.kind, error,
                            wait)
                await asyncio.sleep(wait)
        return f"{error} (after {config.retries} retries)"

    async def write(self, batch: Sequence[Event]) -> None:
        failures: list[tuple[int, str]] = []
        for index, event in enumerate(batch):
            try:
                payload = self._payload(event.value)
            except ValueError as exc:
                failures.append((index, str(exc)))
                continue
            error = await self._send(payload)
            if error is not None:
                failures.append((index, error))
        if failures:
            raise RejectedEvents(failures, kind=self.kind)
