"""``file-sink``: one line per event appended to a file, flushed and fsynced at checkpoints.

``write`` appends through Python's buffer (in a worker thread); ``flush`` (which the stage
calls at every checkpoint and at the end) writes the buffer out and fsyncs the file, so what
a checkpoint covers is on disk once the checkpoint completes. ``stop`` flushes, fsyncs and
closes. The file is opened in append mode (created, with its parent directories, if
missing), so a restarted job adds to it: with checkpoints, lines written after the last one
are written again on resume (at-least-once). Stage instances in one process share one file
handle; instances in several processes (on Ray) append to the same path with ``O_APPEND``,
each write a whole batch of lines.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import IO, Any

from eventray import BaseSink, ConnectorError, Event, RejectedEvents
from eventray.spi import describe

from ._config import FileSinkConfig


class FileSink(BaseSink[FileSinkConfig]):
    """Appends ``str(value)`` (``"text"``), a JSON document (``"json"``) or the bytes
    (``"bytes"``) of each event as one line of ``path``."""

    kind = "file-sink"
    config_type = FileSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._file: IO[bytes] | None = None
        self._lock: asyncio.Lock | None = None
        self.lines = 0  # lines written
        self.syncs = 0  # fsyncs done

    def __deepcopy__(self, memo: dict[int, Any]) -> FileSink:
        return type(self)(self.config)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    async def start(self) -> None:
        """Open ``path`` for appending (creating it and its parent directories)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._file is None:
                self._file = await asyncio.to_thread(self._open)

    def _open(self) -> IO[bytes]:
        path = os.path.abspath(self.config.path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return open(path, "ab")
        except OSError as exc:
            raise ConnectorError(f"cannot open {path!r} for appending: {describe(exc)}",
                                 kind=self.kind) from exc

    async def write(self, batch: Sequence[Event]) -> None:
        if self._file is None:
            await self.start()
        failures: list[tuple[int, str]] = []
        lines: list[bytes] = []
        for index, event in enumerate(batch):
            try:
                lines.append(self._line(event.value))
            except Exception as exc:
                failures.append((index, describe(exc)))
        if lines:
            data = b"".join(lines)
            assert self._lock is not None
            async with self._lock:
                file = self._file
                if file is None:
                    raise ConnectorError("the sink is stopped", kind=self.kind)
                await asyncio.to_thread(file.write, data)
            self.lines += len(lines)
        if failures:
            raise RejectedEvents(failures, kind=self.kind)

    def _line(self, value: Any) -> bytes:
        fmt = self.config.value_format
        if fmt == "bytes":
            if not isinstance(value, bytes | bytearray | memoryview):
                raise ValueError(f"value_format 'bytes' needs bytes, got {type(value).__name__}")
            data = bytes(value)
            return data if data.endswith(b"\n") else data + b"\n"
        if fmt == "json":
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = value if isinstance(value, str) else str(value)
            text = text.removesuffix("\n")
            if "\n" in text:
                raise ValueError("a text value with a newline inside would be two lines")
        return text.encode(self.config.encoding) + b"\n"

    async def flush(self) -> None:
        """Write out what is buffered and fsync the file."""
        if self._lock is None:
            return
        async with self._lock:
            if self._file is not None:
                await asyncio.to_thread(self._sync, self._file)

    def _sync(self, file: IO[bytes]) -> None:
        file.flush()
        os.fsync(file.fileno())
        self.syncs += 1

    async def stop(self) -> None:
        """Flush, fsync and close the file."""
        if self._lock is None:
            return
        async with self._lock:
            file, self._file = self._file, None
            if file is not None:
                try:
                    await asyncio.to_thread(self._sync, file)
                finally:
                    await asyncio.to_thread(file.close)
