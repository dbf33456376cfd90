"""Checkpoint stores: where a job's checkpoints are written part by part and read back whole.

A checkpoint is a set of named parts (one per stage instance, plus the job's own ``"_job"``)
under an integer id. Parts are written one by one, then ``complete`` makes the checkpoint
durable and visible in one step; ``latest`` only ever returns complete checkpoints, so a crash
in the middle of a checkpoint leaves the previous one in force.

``DirectoryStore`` lays a job out on disk as::

    <root>/<job>/000000000007/            complete: MANIFEST.json + one <part>.part per part
    <root>/<job>/000000000008.partial/    being written (or left over by a crash): invisible
    <root>/<job>/000000000005.pruned/     being deleted by ``prune``: invisible

Each file is written to a temporary file, fsynced and renamed into place. ``complete`` writes
``MANIFEST.json`` (id, creation time, and each part's name, file, size and sha256), fsyncs the
``.partial`` directory, renames it to its final 12-digit name and fsyncs the job directory.
``latest`` checks every part's size and sha256 against the manifest; a corrupt checkpoint is
skipped with a warning and the next older one is returned. All file I/O runs in a worker
thread, never on the event loop. ``MemoryStore`` has the same semantics without the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import reprlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, unquote

from eventray._model.errors import ConfigError

__all__ = [
    "DEFAULT_ROOT",
    "KEEP",
    "Checkpoint",
    "CheckpointStore",
    "DirectoryStore",
    "MemoryStore",
    "open_store",
]

log = logging.getLogger("eventray")

DEFAULT_ROOT = ".eventray/checkpoints"
KEEP = 3

MANIFEST = "MANIFEST.json"
_FORMAT = 1
_ID_DIGITS = 12
_MAX_ID = 10**_ID_DIGITS - 1
_PART_SUFFIX = ".part"
_PARTIAL_SUFFIX = ".partial"
_PRUNED_SUFFIX = ".pruned"
_JOB_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENTRY = re.compile(r"([0-9]{12})(\.partial|\.pruned)?")
_CHUNK = 1 << 20

_PartEntry = tuple[str, str, int, str]  # a manifest's part: name, file, size, sha256


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint as read back."""

    job: str
    id: int
    parts: dict[str, bytes]  # part name (a stage instance name, or "_job") -> data
    created: float  # time.time() when it was completed


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a job's checkpoints go. A checkpoint is written part by part, then made complete in
    one step; only complete checkpoints are ever read back."""

    async def write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        """Store one part of a checkpoint that is not complete yet (a second write of the same
        name replaces the first). ValueError if the checkpoint is already complete."""
        ...

    async def complete(self, job: str, checkpoint_id: int) -> None:
        """Make the checkpoint, with every part written so far, durable and visible at once.
        ValueError if it is already complete."""
        ...

    async def latest(self, job: str) -> Checkpoint | None:
        """The intact complete checkpoint with the highest id, or None."""
        ...

    async def prune(self, job: str, keep: int = KEEP) -> None:
        """Remove all but the newest ``keep`` complete checkpoints, and every incomplete one
        that can no longer complete (not newer than the newest complete one)."""
        ...


def _check_job(job: str) -> None:
    if not isinstance(job, str) or not _JOB_NAME.fullmatch(job):
        raise ValueError(f"job name must be letters, digits, '_' and '-', got {job!r}")


def _check_id(checkpoint_id: int) -> None:
    valid = isinstance(checkpoint_id, int) and not isinstance(checkpoint_id, bool)
    if not valid or not 0 <= checkpoint_id <= _MAX_ID:
        raise ValueError(f"checkpoint id must be an int from 0 to {_MAX_ID}, got {checkpoint_id!r}")


def _check_keep(keep: int) -> None:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an int of at least 1, got {keep!r}")


class MemoryStore:
    """A checkpoint store in memory, for tests: the semantics of ``DirectoryStore``, no disk."""

    def __init__(self) -> None:
        self._partial: dict[str, dict[int, dict[str, bytes]]] = {}
        self._complete: dict[str, dict[int, Checkpoint]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(jobs={sorted(self._complete.keys() | self._partial.keys())})"

    async def write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        """Store one part of a checkpoint that is not complete yet."""
        _check_job(job)
        _check_id(checkpoint_id)
        if checkpoint_id in self._complete.get(job, {}):
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        self._partial.setdefault(job, {}).setdefault(checkpoint_id, {})[name] = bytes(data)

    async def complete(self, job: str, checkpoint_id: int) -> None:
        """Make the checkpoint visible with every part written so far."""
        _check_job(job)
        _check_id(checkpoint_id)
        done = self._complete.setdefault(job, {})
        if checkpoint_id in done:
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        parts = self._partial.get(job, {}).pop(checkpoint_id, {})
        done[checkpoint_id] = Checkpoint(job, checkpoint_id, parts, time.time())

    async def latest(self, job: str) -> Checkpoint | None:
        """The complete checkpoint with the highest id, or None."""
        _check_job(job)
        done = self._complete.get(job)
        if not done:
            return None
        newest = done[max(done)]
        return dataclasses.replace(newest, parts=dict(newest.parts))

    async def highest_id(self, job: str) -> int:
        """The highest checkpoint id the store holds of ``job``, complete or not (0: none)."""
        _check_job(job)
        ids = [*self._complete.get(job, {}), *self._partial.get(job, {})]
        return max(ids, default=0)

    async def prune(self, job: str, keep: int = KEEP) -> None:
        """Remove all but the newest ``keep`` complete checkpoints, and stale partial ones."""
        _check_job(job)
        _check_keep(keep)
        done = self._complete.get(job)
        if not done:
            return
        newest = max(done)
        for checkpoint_id in sorted(done)[:-keep]:
            del done[checkpoint_id]
        partial = self._partial.get(job, {})
        for checkpoint_id in [i for i in partial if i <= newest]:
            del partial[checkpoint_id]


class DirectoryStore:
    """A checkpoint store in a local (or mounted) directory; see the module docstring for the
    layout. A relative ``root`` is resolved against the working directory when created."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    async def write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        """Write one part into the checkpoint's ``.partial`` directory, durably."""
        _check_job(job)
        _check_id(checkpoint_id)
        await asyncio.to_thread(self._write_part, job, checkpoint_id, name, data)

    async def complete(self, job: str, checkpoint_id: int) -> None:
        """Write the manifest and rename ``.partial`` to the final name, durably."""
        _check_job(job)
        _check_id(checkpoint_id)
        await asyncio.to_thread(self._complete, job, checkpoint_id)

    async def latest(self, job: str) -> Checkpoint | None:
        """The intact complete checkpoint with the highest id; corrupt ones are skipped with a
        warning."""
        _check_job(job)
        job_dir = self.root / job
        for checkpoint_id in await asyncio.to_thread(self._complete_ids, job_dir):
            directory = job_dir / _dir_name(checkpoint_id)
            found = await asyncio.to_thread(_load, job, checkpoint_id, directory)
            if isinstance(found, Checkpoint):
                return found
            log.warning("checkpoint %s is corrupt, trying an older one: %s", directory, found)
        return None

    async def prune(self, job: str, keep: int = KEEP) -> None:
        """Remove all but the newest ``keep`` complete checkpoints, and stale partial ones."""
        _check_job(job)
        _check_keep(keep)
        await asyncio.to_thread(self._prune, self.root / job, keep)

    async def highest_id(self, job: str) -> int:
        """The highest checkpoint id the store holds of ``job``: complete, corrupt or partial
        (0: none), so a new run numbers after every one."""
        _check_job(job)
        return await asyncio.to_thread(self._highest_id, self.root / job)

    @staticmethod
    def _highest_id(job_dir: Path) -> int:
        try:
            entries = os.listdir(job_dir)
        except FileNotFoundError:
            return 0
        ids = [int(match.group(1)) for entry in entries if (match := _ENTRY.fullmatch(entry))]
        return max(ids, default=0)

    # Blocking halves, run in a worker thread.

    def _write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        job_dir = self.root / job
        final = job_dir / _dir_name(checkpoint_id)
        if final.exists():
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        partial = job_dir / (_dir_name(checkpoint_id) + _PARTIAL_SUFFIX)
        _ensure_dir(partial)
        try:
            _write_file(partial, _part_file(name), data)
        except FileNotFoundError:
            if final.exists():  # completed while we wrote
                raise ValueError(
                    f"checkpoint {checkpoint_id} of job {job!r} is already complete") from None
            raise

    def _complete(self, job: str, checkpoint_id: int) -> None:
        job_dir = self.root / job
        final = job_dir / _dir_name(checkpoint_id)
        partial = job_dir / (_dir_name(checkpoint_id) + _PARTIAL_SUFFIX)
        if final.exists():
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        _ensure_dir(partial)
        parts: list[dict[str, object]] = []
        for entry in sorted(os.listdir(partial)):
            path = partial / entry
            if entry.endswith(".tmp"):  # left over by an interrupted write_part
                path.unlink(missing_ok=True)
            elif entry.endswith(_PART_SUFFIX) and path.is_file():
                size, digest = _measure(path)
                name = unquote(entry[: -len(_PART_SUFFIX)])
                parts.append({"name": name, "file": entry, "size": size, "sha256": digest})
        manifest = {"format": _FORMAT, "job": job, "id": checkpoint_id, "created": time.time(),
                    "parts": parts}
        _write_file(partial, MANIFEST, json.dumps(manifest, indent=1).encode())
        _fsync_dir(partial)
        if final.exists():  # os.rename would replace an empty directory
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        try:
            os.rename(partial, final)
        except OSError:
            if final.exists():
                raise ValueError(
                    f"checkpoint {checkpoint_id} of job {job!r} is already complete") from None
            raise
        _fsync_dir(job_dir)

    @staticmethod
    def _complete_ids(job_dir: Path) -> list[int]:
        """Ids of the complete checkpoint directories, newest first."""
        try:
            entries = os.listdir(job_dir)
        except FileNotFoundError:
            return []
        ids = [int(entry) for entry in entries if _is_id(entry) and (job_dir / entry).is_dir()]
        return sorted(ids, reverse=True)

    @staticmethod
    def _prune(job_dir: Path, keep: int) -> None:
        try:
            entries = os.listdir(job_dir)
        except FileNotFoundError:
            return
        complete: list[int] = []
        partial: list[int] = []
        pruned: list[str] = []
        for entry in entries:
            match = _ENTRY.fullmatch(entry)
            if match is None or not (job_dir / entry).is_dir():
                continue
            if match[2] is None:
                complete.append(int(match[1]))
            elif match[2] == _PARTIAL_SUFFIX:
                partial.append(int(match[1]))
            else:
                pruned.append(entry)
        complete.sort()
        for checkpoint_id in complete[:-keep]:
            # Renamed first, so that a crash mid-delete leaves nothing that looks complete.
            doomed = job_dir / (_dir_name(checkpoint_id) + _PRUNED_SUFFIX)
            if doomed.exists():
                shutil.rmtree(doomed)
            os.rename(job_dir / _dir_name(checkpoint_id), doomed)
            pruned.append(doomed.name)
        if complete:
            pruned.extend(_dir_name(i) + _PARTIAL_SUFFIX for i in partial if i <= complete[-1])
        for entry in pruned:
            shutil.rmtree(job_dir / entry, ignore_errors=True)
        if pruned:
            _fsync_dir(job_dir)


def open_store(store: str | os.PathLike[str] | CheckpointStore | None) -> CheckpointStore:
    """None -> ``DirectoryStore(DEFAULT_ROOT)``; a path -> ``DirectoryStore(path)``; a
    ``CheckpointStore`` -> itself; anything else is a ``ConfigError`` on ``checkpoint_store``."""
    if store is None:
        return DirectoryStore(DEFAULT_ROOT)
    if isinstance(store, str | os.PathLike) and isinstance(os.fspath(store), str):
        return DirectoryStore(store)
    if isinstance(store, CheckpointStore):
        return store
    raise ConfigError(
        f"expected a directory path or a CheckpointStore, got {type(store).__qualname__} "
        f"{reprlib.repr(store)}", field="checkpoint_store")


# Files and directories.

def _dir_name(checkpoint_id: int) -> str:
    return f"{checkpoint_id:0{_ID_DIGITS}d}"


def _is_id(entry: str) -> bool:
    match = _ENTRY.fullmatch(entry)
    return match is not None and match[2] is None


def _part_file(name: str) -> str:
    return quote(name, safe="") + _PART_SUFFIX


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync elsewhere
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry's parent."""
    if path.is_dir():
        return
    _ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return  # another writer made it
    _fsync_dir(path.parent)


def _write_file(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory/name`` through a fsynced temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _load(job: str, checkpoint_id: int, directory: Path) -> Checkpoint | str:
    """The checkpoint in ``directory``, or what is wrong with it."""
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except OSError as exc:
        return f"{MANIFEST} is unreadable: {exc}"
    try:
        created, entries = _parse_manifest(raw, checkpoint_id)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError included
        return f"{MANIFEST} is unreadable: {exc}"
    parts: dict[str, bytes] = {}
    for name, file, size, sha256 in entries:
        what = f"part {name!r} ({file})"
        try:
            data = (directory / file).read_bytes()
        except FileNotFoundError:
            return f"{what} is missing"
        except OSError as exc:
            return f"{what} is unreadable: {exc}"
        if len(data) != size:
            shape = "truncated" if len(data) < size else "too long"
            return f"{what} is {shape}: {len(data)} bytes, the manifest says {size}"
        if hashlib.sha256(data).hexdigest() != sha256:
            return f"{what} has the wrong sha256 checksum"
        parts[name] = data
    return Checkpoint(job, checkpoint_id, parts, created)


def _parse_manifest(raw: bytes, checkpoint_id: int) -> tuple[float, list[_PartEntry]]:
    """``(created, [(name, file, size, sha256), ...])``; ValueError naming what is wrong."""
    manifest: Any = json.loads(raw)
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"unknown format {manifest.get('format')!r}")
    if manifest.get("id") != checkpoint_id:
        raise ValueError(f"id {manifest.get('id')!r} does not match the directory")
    created = manifest.get("created")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise ValueError(f"bad 'created' {created!r}")
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        raise ValueError("'parts' is not a list")
    entries: list[_PartEntry] = []
    for part in parts:
        if not isinstance(part, dict):
            raise ValueError(f"bad part entry {part!r}")
        name, file, size, sha256 = (part.get(k) for k in ("name", "file", "size", "sha256"))
        if not (isinstance(name, str) and isinstance(file, str) and isinstance(size, int)
                and isinstance(sha256, str)):
            raise ValueError(f"bad part entry {part!r}")
        if file != os.path.basename(file) or file in ("", ".", "..", MANIFEST):
            raise ValueError(f"bad file name {file!r} for part {name!r}")
        entries.append((name, file, size, sha256))
    if len({name for name, *_ in entries}) != len(entries):
        raise ValueError("a part name appears twice")
    return float(created), entries
