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
offset.

Replaced files. While the source runs, a file whose inode changed under its name is another
file, read from the start (with a warning); so is one that shrank below its offset, or whose
bytes around its offset changed (rewritten in place). A file that appears under a new name
with the inode of a file it had read (``app.log`` renamed ``app.log.1`` in a followed
directory) goes on from that file's offset, so nothing is read twice and lines written just
before the rename are read, whatever the names' order (with ``parallelism > 1``, only if both
names fall to the same instance). With each offset the source keeps fingerprints of the
file's first bytes and of the bytes just before the offset (in checkpoints too), so a
resumed source reads a file replaced while the job was down from its start. Following a
single file, lines written to it after the last read and before it was renamed away are not
read.

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
TAIL = 64  # bytes before the offset that do the same
Marks = tuple[str, str]  # sha1 of the first bytes (up to HEAD) and of those before the offset
Seen = tuple[int, int, int]  # (device, inode, size)


def _marks(path: Path, offset: int) -> Marks | None:
    """The fingerprints of ``path`` at ``offset`` (None if it is gone)."""
    try:
        with path.open("rb") as file:
            head = file.read(min(HEAD, offset))
            file.seek(max(0, offset - TAIL))
            tail = file.read(offset - max(0, offset - TAIL))
    except FileNotFoundError:
        return None
    return (hashlib.sha1(head, usedforsecurity=False).hexdigest(),
            hashlib.sha1(tail, usedforsecurity=False).hexdigest())


@dataclass
class _Found:
    """What one pass over the files found: events and the offsets they move to."""

    events: list[Event]
    offsets: dict[str, int]
    marks: dict[str, Marks] = field(default_factory=dict)
    seen: dict[str, Seen] = field(default_factory=dict)


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
        self.marks: dict[str, Marks] = {}  # file -> fingerprints at its offset
        self._seen: dict[str, Seen] = {}  # file -> (device, inode, size) at the last scan
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
        """``{"offsets": {file: bytes handed out}, "marks": {file: [head sha1, tail sha1]}}``."""
        return {"offsets": dict(self.offsets),
                "marks": {name: list(marks) for name, marks in self.marks.items()}}

    def restore(self, state: Any) -> None:
        self._seen = {}  # every file's fingerprints are checked again
        if state is None:
            self.offsets, self.marks = {}, {}
            return
        if not isinstance(state, dict):
            raise TypeError(f"a file-source position is a dict, not {state!r:.80}")
        if not isinstance(state.get("offsets"), dict):  # the first format: offsets alone
            state = {"offsets": state}
        self.offsets = {str(name): int(offset) for name, offset in state["offsets"].items()}
        self.marks = {str(name): (str(marks[0]), str(marks[1]))
                      for name, marks in state.get("marks", {}).items()}

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
        """What a scan found becomes the source's state (a scan that failed changes none)."""
        self.offsets.update(found.offsets)
        self.marks.update(found.marks)
        self._seen.update(found.seen)

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
        inodes = {seen[:2]: name for name, seen in self._seen.items()}  # at the last scan
        budget = self.config.chunk_size
        whole = self.config.value_format == "bytes"
        for name, path in self._files():
            if len(found.events) >= max_events or budget <= 0:
                break
            if whole:
                if name not in self.offsets:  # each file is read once, when first seen
                    budget -= self._read_whole(name, path, found)
                continue
            offset = self._offset(name, path, found, inodes)
            if offset is None:
                continue
            if found.seen[name][2] > offset:
                budget -= self._read_lines(name, path, offset, max_events, budget, found)
            end = found.offsets.get(name, offset)
            if end and (end != self.offsets.get(name) or name not in self.marks):
                marks = _marks(path, end)
                if marks is not None:
                    found.marks[name] = marks
        return found

    def _offset(self, name: str, path: Path, found: _Found,
                inodes: dict[tuple[int, int], str]) -> int | None:
        """Where to read ``name`` from: where the file under it was read to (under this name
        or, renamed, under the one it had at the last scan); 0 for a file new to the source
        or another file under a known name; None if it is gone."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        seen = found.seen[name] = (stat.st_dev, stat.st_ino, stat.st_size)
        before = self._seen.get(name)
        offset = self.offsets.get(name)
        if before is None or before[:2] != seen[:2]:  # a name new to this run, or a new inode
            renamed = inodes.get(seen[:2])
            if renamed is not None and renamed != name and renamed in self.offsets:
                found.offsets[name] = self.offsets[renamed]
                marks = self.marks.get(renamed)
                if marks is not None:
                    found.marks[name] = marks
                return self.offsets[renamed]
            if before is not None and offset:
                return self._again(name, path, found, "replaced (a new inode)")
        if not offset or before == seen:
            return offset or 0
        if stat.st_size < offset:
            return self._again(name, path, found, f"truncated below offset {offset}")
        if self.marks.get(name) not in (None, _marks(path, offset)):
            return self._again(name, path, found, "rewritten" if before is not None
                               else "replaced while the source was away")
        return offset

    def _again(self, name: str, path: Path, found: _Found, why: str) -> int:
        log.warning("%s: %s was %s; reading it from the start", self.kind, path, why)
        found.offsets[name] = 0
        return 0

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
        try:
            file = path.open("rb")
        except FileNotFoundError:  # gone since it was listed
            return 0
        with file:
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
