"""``object-storage-sink``: events as objects in an S3-compatible bucket, through obstore.

Object names. Each sink copy picks a run name when it starts, ``<UTC time>-<8 hex>``, and
numbers what it writes: ``<prefix><run>-<sequence, 10 digits>.<ext>`` (``.jsonl`` for
``"json"``, ``.txt`` for ``"text"``, ``.bin`` for ``"bytes"``). Names sort in write order
within a run and runs sort by start time. A write that fails and is retried (obstore retries
5xx, timeouts and connection errors ``retries`` times) puts the same name again, so a retry
never leaves a second copy; objects of an earlier run are never overwritten.

Named objects. A value that is a dict with a ``"key"`` (str) and a ``"body"`` (bytes or str),
and at most a ``"content_type"`` besides, is written as its own object named ``prefix + key``
(replacing an object of that name: writing it again is harmless). This is how a whole log is
uploaded: ``{"key": "job-1/driver.log", "body": text}``. ``named_objects=False`` turns this
off.

Guarantee: at-least-once. ``write`` returns once every object is stored, so ``flush`` has
nothing left to do. Events written after the last checkpoint are written again when a job
resumes, into objects of the new run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from obstore.store import S3Store

from eventray import BaseSink, ConnectorError, Event, RejectedEvents
from eventray.spi import describe

from ._config import ObjectStorageSinkConfig
from ._store import STORE_ERRORS, make_store, translate

_EXTENSIONS = {"json": ".jsonl", "text": ".txt", "bytes": ".bin"}
_CONTENT_TYPES = {"json": "application/x-ndjson", "text": "text/plain; charset=utf-8",
                  "bytes": "application/octet-stream"}
_NAMED_FIELDS = {"key", "body", "content_type"}


def named_object(value: Any) -> tuple[str, bytes, str | None] | None:
    """``(key, body, content_type)`` if ``value`` is a named object, else None; ValueError if
    it looks like one (a dict with "key" and "body" and nothing unknown) but is malformed."""
    if not isinstance(value, Mapping) or "key" not in value or "body" not in value \
            or not set(value) <= _NAMED_FIELDS:
        return None
    key, body, content_type = value["key"], value["body"], value.get("content_type")
    if not isinstance(key, str) or not key or key.startswith("/") or any(
            part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"a named object's key must be a relative name like 'a/b.log', "
                         f"got {key!r}")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ValueError(f"a named object's body must be bytes or str, not "
                         f"{type(body).__name__}")
    if content_type is not None and not isinstance(content_type, str):
        raise ValueError(f"content_type must be a str, got {content_type!r}")
    return key, bytes(body), content_type


class ObjectStorageSink(BaseSink[ObjectStorageSinkConfig]):
    """Writes events to ``bucket`` under ``prefix``: one object per batch (JSON Lines or text
    lines) or, with ``batch=False``, one per event; see the module docstring for names."""

    kind = "object-storage-sink"
    config_type = ObjectStorageSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._store: S3Store | None = None
        self._run = ""
        self._sequence = itertools.count()
        self.objects = 0  # objects stored
        self.written: list[str] = []  # names of the last few objects stored (newest last)

    def __deepcopy__(self, memo: dict[int, Any]) -> ObjectStorageSink:
        """A copy (for another stage instance or process) with its own client and run."""
        return type(self)(self.config)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    @property
    def run(self) -> str:
        """The run part of the names this sink writes (set by ``start``)."""
        return self._run

    async def start(self) -> None:
        """Make the client (no request is sent until the first write)."""
        if self._store is None:
            self._store = make_store(self.config)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self._run = f"{stamp}-{uuid.uuid4().hex[:8]}"

    def next_name(self) -> str:
        """The name of the next numbered object."""
        ext = _EXTENSIONS[self.config.value_format]
        return f"{self.config.prefix}{self._run}-{next(self._sequence):010d}{ext}"

    async def put_object(self, key: str, body: bytes | str,
                         content_type: str | None = None) -> str:
        """Store one object named ``prefix + key`` and return its full name."""
        if self._store is None:
            await self.start()
        found = named_object({"key": key, "body": body, "content_type": content_type})
        assert found is not None
        name = self.config.prefix + found[0]
        await self._put(name, found[1], found[2] or "application/octet-stream")
        return name

    async def write(self, batch: Sequence[Event]) -> None:
        if self._store is None:
            await self.start()
        failures: list[tuple[int, str]] = []
        puts: list[tuple[int, str, bytes, str]] = []  # (index or -1 for a batch, name, ...)
        lines: list[tuple[int, bytes]] = []
        fmt = self.config.value_format
        for index, event in enumerate(batch):
            try:
                named = named_object(event.value) if self.config.named_objects else None
                if named is not None:
                    key, body, content_type = named
                    puts.append((index, self.config.prefix + key, body,
                                 content_type or "application/octet-stream"))
                elif self.config.batch:
                    lines.append((index, _line(event.value, fmt)))
                else:
                    puts.append((index, self.next_name(), _body(event.value, fmt),
                                 self.config.content_type or _CONTENT_TYPES[fmt]))
            except Exception as exc:
                failures.append((index, describe(exc)))
        if lines:
            body = b"".join(line for _, line in lines)
            content_type = self.config.content_type or _CONTENT_TYPES[fmt]
            try:
                await self._put(self.next_name(), body, content_type)
            except ConnectorError as exc:
                failures.extend((index, str(exc)) for index, _ in lines)
        await self._put_each(puts, failures)
        if failures:
            raise RejectedEvents(sorted(failures), kind=self.kind)

    async def _put_each(self, puts: list[tuple[int, str, bytes, str]],
                        failures: list[tuple[int, str]]) -> None:
        """Put single objects, ``concurrency`` at a time; failures by index."""
        limit = asyncio.Semaphore(self.config.concurrency)

        async def put(index: int, name: str, body: bytes, content_type: str) -> None:
            async with limit:
                try:
                    await self._put(name, body, content_type)
                except ConnectorError as exc:
                    failures.append((index, str(exc)))

        await asyncio.gather(*(put(*entry) for entry in puts))

    async def _put(self, name: str, body: bytes, content_type: str) -> None:
        store = self._store
        assert store is not None
        try:
            await store.put_async(name, body, attributes={"Content-Type": content_type})
        except STORE_ERRORS as exc:
            raise translate(exc, self.kind,
                            f"cannot write s3://{self.config.bucket}/{name}") from exc
        self.objects += 1
        self.written = [*self.written[-99:], name]

    async def stop(self) -> None:
        """Forget the client (obstore's has no connection to close)."""
        self._store = None


def _line(value: Any, fmt: str) -> bytes:
    """One line of a batch object."""
    if fmt == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    text = value if isinstance(value, str) else str(value)
    if "\n" in text.rstrip("\n"):
        raise ValueError("a text value with a newline inside would be two lines")
    return text.rstrip("\n").encode() + b"\n"


def _body(value: Any, fmt: str) -> bytes:
    """The object of one event."""
    if fmt == "bytes":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ValueError(f"value_format 'bytes' needs bytes, got {type(value).__name__}")
        return bytes(value)
    if fmt == "json":
        return json.dumps(value, ensure_ascii=False).encode()
    return (value if isinstance(value, str) else str(value)).encode()

