"""``file-source``: the lines (or whole files) of a file or a directory, tailed on request.

Position. The source keeps, per file (named relative to ``path``), the byte offset up to
which it has handed events out: a line counts once the event for it (or its dead letter) was
returned by ``read``. ``snapshot`` returns these offsets and ``restore`` puts them back, so a
job resumed from a checkpoint reads on exactly after the last line the checkpoint covers.

Reading. Files are read in name order, in a worker thread (``asyncio.to_thread``, so one at
a time per source), at most ``chunk_size`` bytes and ``max_events`` events per ``read``. In
``"text"`` mode a line without its newline is held back while following (it is still being
written); without ``follow`` a last line with no newline is emitted at the end. A line that
does not decode, or is longer than ``max_line_bytes``, is a dead letter naming the file and
offset. A file that shrank below its offset (truncated or replaced) is read again from the
start, with a warning, and so is a file replaced by another of the same name (a new inode,
as log rotation makes) while the source runs.

Following. With ``follow`` the source never ends: a ``read`` that finds nothing new waits
``poll_interval`` seconds (waking early for a drain), lists the directory again and returns
what it found, possibly nothing. ``stop_reading`` (a drain) makes the next read return None.

Splitting. With ``parallelism > 1`` the instances split the files: each takes the files
whose name hashes to it (one file is read by one instance).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from eventray import BaseSource, DeadLetter, Event

from ._config import FileSourceConfig

log = logging.getLogger("eventray")

HEAD = 128  # bytes of a file's start that tell it from another under the same name
RETIRED = 64  # fingerprints of replaced files kept, to recognise them under a new name
Head = tuple[int, str]  # (bytes, sha1 of them)


def _head(path: Path, length: int) -> Head | None:
    try:
        with path.open("rb") as file:
            data = file.read(length)
    except FileNotFoundError:
        return None
    return (len(data), hashlib.sha1(data, usedforsecurity=False).hexdigest())


@dataclass
class _Found:
    """What one pass over the files found: events and the offsets they move to."""

    events: list[Event]
    offsets: dict[str, int]
    heads: dict[str, Head] = field(default_factory=dict)


class FileSource(BaseSource[FileSourceConfig]):
    """One event per line (``"text"``) or per file (``"bytes"``) of ``path``; each event's
    ``headers["path"]`` is the file it came from and its ``position`` ``(file, end offset)``."""

    kind = "file-source"
    config_type = FileSourceConfig
    runs_in_driver = True  # the files are on the machine of the program that names them

    def __init__(self, config: Any = None, /, *, share: tuple[int, int] = (0, 1),
                 **fields: Any) -> None:
        super().__init__(config, **fields)
        # bounded unless following (instance attribute; the class says what BaseSource does)
        self.__dict__["bounded"] = not self.config.follow
        self.root = Path(self.config.path)
        self.share = share  # (index, count): this instance reads the files hashing to index
        self.offsets: dict[str, int] = {}  # file (relative name) -> bytes handed out
        self.heads: dict[str, Head] = {}  # file -> fingerprint of its first bytes
        self._seen: dict[str, tuple[int, int, int]] = {}  # file -> (device, inode, size)
        self._retired: list[tuple[Head, int]] = []  # replaced files: (fingerprint, offset)
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self.dead_letters = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> FileSource:
        copy = type(self)(self.config, share=self.share)
        copy.restore(self.snapshot())
        return copy

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "share": self.share, "position": self.snapshot()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], share=state["share"])  # type: ignore[misc]
        self.restore(state["position"])

    def split(self, index: int, count: int) -> FileSource:
        """The source of instance ``index`` of ``count``: the files whose name hashes to
        ``index`` (each file is read by one instance)."""
        return type(self)(self.config, share=(index, count))

    def snapshot(self) -> dict[str, Any]:
        """``{"offsets": {file: bytes handed out}, "heads": {file: [bytes, sha1]}}``."""
        return {"offsets": dict(self.offsets),
                "heads": {name: list(head) for name, head in self.heads.items()}}

    def restore(self, state: Any) -> None:
        self._seen = {}  # every file's first bytes are checked again
        if state is None:
            self.offsets, self.heads = {}, {}
            return
        if not isinstance(state, dict) or not isinstance(state.get("offsets"), dict):
            raise TypeError(f"a file-source position is a dict of offsets and heads, not "
                            f"{state!r:.80}")
        self.offsets = {str(name): int(offset) for name, offset in state["offsets"].items()}
        self.heads = {str(name): (int(head[0]), str(head[1]))
                      for name, head in state.get("heads", {}).items()}

    def stop_reading(self) -> None:
        """A drain: the read in progress returns what it has, later reads return None."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def read(self, max_events: int) -> Sequence[Event] | None:
        if self._stopping:
            return None
        found = await asyncio.to_thread(self._scan, max_events)
        self._advance(found)  # with no events, only resets (a file replaced)
        if not found.events and self.config.follow and not self._stopping:
            await self._pause()
            found = await asyncio.to_thread(self._scan, max_events)
            self._advance(found)
        if found.events:
            return found.events
        return [] if self.config.follow and not self._stopping else None

    def _advance(self, found: _Found) -> None:
        self.offsets.update(found.offsets)
        self.heads.update(found.heads)

    async def _pause(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
        except TimeoutError:
            pass

    # The blocking half, run in a worker thread.

    def _files(self) -> list[tuple[str, Path]]:
        """This instance's files as (relative name, path), in name order."""
        if self.root.is_file():
            found = [(self.root.name, self.root)]
        elif self.root.is_dir():
            pattern = self.config.glob
            paths = self.root.rglob(pattern) if self.config.recursive \
                else self.root.glob(pattern)
            found = sorted((path.relative_to(self.root).as_posix(), path)
                           for path in paths if path.is_file())
        else:
            return []
        index, count = self.share
        if count == 1:
            return found
        return [(name, path) for name, path in found
                if zlib.crc32(name.encode()) % count == index]

    def _scan(self, max_events: int) -> _Found:
        found = _Found([], {})
        budget = self.config.chunk_size
        whole = self.config.value_format == "bytes"
        for name, path in self._files():
            if len(found.events) >= max_events or budget <= 0:
                break
            if whole:
                if name not in self.offsets:  # each file is read once, when first seen
                    budget -= self._read_whole(name, path, found)
                continue
            offset = self._offset(name, path, found)
            if offset is None:
                continue
            size = self._seen[name][2]
            if size > offset:
                budget -= self._read_lines(name, path, offset, max_events, budget, found)
            end = found.offsets.get(name, offset)
            head = found.heads.get(name, self.heads.get(name))
            if end and (head is None or head[0] < min(HEAD, end)):
                new_head = _head(path, min(HEAD, end))
                if new_head is not None:
                    found.heads[name] = new_head
        return found

    def _offset(self, name: str, path: Path, found: _Found) -> int | None:
        """Where to read ``name`` from: its offset, unless the file under that name is
        another now (then 0, or where a replaced file with the same first bytes was); None
        if it is gone."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        seen = (stat.st_dev, stat.st_ino, stat.st_size)
        changed = self._seen.get(name) != seen
        self._seen[name] = seen
        offset = self.offsets.get(name, 0)
        if not changed:
            return offset
        head = self.heads.get(name)
        if offset and (stat.st_size < offset or head is None or _head(path, head[0]) != head):
            log.warning("%s: %s is another file now (replaced, rotated or rewritten); reading "
                        "it from the start", self.kind, path)
            if head is not None:
                self._retired = [*self._retired[-(RETIRED - 1):], (head, offset)]
            offset = found.offsets[name] = 0
            found.heads.pop(name, None)
            self.heads.pop(name, None)
        if offset == 0:
            for index, (old_head, old_offset) in enumerate(self._retired):
                if stat.st_size >= old_offset and _head(path, old_head[0]) == old_head:
                    del self._retired[index]  # the replaced file, under a new name
                    offset = found.offsets[name] = old_offset
                    found.heads[name] = old_head
                    break
        return offset

    def _read_whole(self, name: str, path: Path, found: _Found) -> int:
        """One file as one event (or a dead letter if it is too large); the bytes read."""
        limit = self.config.max_file_bytes
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except FileNotFoundError:
            return 0
        if len(data) > limit:
            self._letter(found, name, data[:200], len(data),
                         f"the file is over max_file_bytes ({limit})")
            return len(data)
        found.events.append(Event(data, headers={"path": name}, position=(name, len(data))))
        found.offsets[name] = len(data)
        return len(data)

    def _read_lines(self, name: str, path: Path, offset: int, max_events: int, budget: int,
                    found: _Found) -> int:
        """Lines of one file from ``offset`` into ``found``; the bytes read."""
        limit = self.config.max_line_bytes
        encoding = self.config.encoding
        start = offset
        with path.open("rb") as file:
            file.seek(offset)
            while len(found.events) < max_events and offset - start < budget:
                raw = file.readline(limit + 1)
                if not raw:
                    break
                end = offset + len(raw)
                if not raw.endswith(b"\n"):
                    if len(raw) > limit:
                        end = self._skip_line(file, end, self.config.follow)
                        if end < 0:  # the rest of the long line is not written yet
                            break
                        self._letter(found, name, raw[:200], end, f"the line is longer than "
                                     f"max_line_bytes ({limit}) (from byte {offset})")
                        offset = found.offsets[name] = end
                        file.seek(end)
                        continue
                    if self.config.follow:
                        break  # still being written: wait for its newline
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    self._letter(found, name, raw, end, f"UnicodeDecodeError: {exc.reason} "
                                 f"({encoding}, byte {offset + exc.start} of {name})")
                else:
                    found.events.append(Event(text.rstrip("\r\n") if text.endswith("\n")
                                              else text, headers={"path": name},
                                              position=(name, end)))
                offset = found.offsets[name] = end
        return offset - start

    @staticmethod
    def _skip_line(file: IO[bytes], at: int, follow: bool) -> int:
        """The offset after the next newline from ``at`` (or the end of the file); -1 when
        following and the newline is not written yet."""
        while chunk := file.read(1 << 16):
            newline = chunk.find(b"\n")
            if newline >= 0:
                return at + newline + 1
            at += len(chunk)
        return -1 if follow else at

    def _letter(self, found: _Found, name: str, raw: bytes, end: int, error: str) -> None:
        self.dead_letters += 1
        where = self.root / name if self.root.is_dir() else self.root
        letter = DeadLetter(raw, f"{error} in {where}", self.kind)
        found.events.append(Event(letter, headers={"path": name}, position=(name, end)))
        found.offsets[name] = end
