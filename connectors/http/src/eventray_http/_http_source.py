"""``http-source``: poll a URL, one event per response body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from eventray import ConnectorError, DeadLetter, Event, PollingSource
from eventray.spi import describe

from ._config import HttpSourceConfig
from ._formats import decode


class HttpSource(PollingSource[HttpSourceConfig]):
    """Polls ``url`` every ``period`` ms. An error status, a timeout or a refused connection
    backs off and retries (the stream goes on); a body that does not decode in
    ``value_format`` becomes a dead letter."""

    kind = "http-source"
    config_type = HttpSourceConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.interval = self.config.period / 1000
        self.poll_timeout = self.config.timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout)
            )

    async def poll(self) -> Sequence[Any]:
        await self.start()
        assert self._session is not None
        config = self.config
        async with self._session.request(config.method, config.url,
                                         headers=config.headers) as response:
            body = await response.read()
            if response.status >= 400:
                raise ConnectorError(f"HTTP {response.status} from {config.url}",
                                     kind=self.kind, retriable=True)
        try:
            return [decode(body, config.value_format)]
        except ValueError as exc:
            return [Event(DeadLetter(body, describe(exc), self.kind))]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
