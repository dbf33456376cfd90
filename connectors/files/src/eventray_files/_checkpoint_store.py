"""``ObjectStorageStore``: a job's checkpoints in an S3-compatible bucket, so every node of a
Ray cluster (and a driver started elsewhere) finds them.

Layout under ``prefix``::

    <prefix><job>/000000000007/MANIFEST.json        written last: the checkpoint is complete
    <prefix><job>/000000000007/parts/<name>.part   one object per part (name URL-quoted)

S3 has no rename, so the manifest object is what makes a checkpoint complete: ``complete``
lists the stored parts and writes it (with each part's name, object, size and sha256; a part
another process wrote is read back to measure it),
with a create-only put (``If-None-Match``), so two completes of one checkpoint cannot both
succeed. ``latest`` reads manifests from the newest id down and checks every part's size and
sha256; a checkpoint whose parts are missing or damaged, or whose manifest does not parse, is
skipped with a warning, and one without a manifest (never completed) is passed over. ``prune``
deletes a checkpoint's manifest before its parts, so a crash mid-prune leaves nothing that
looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Any
from urllib.parse import quote, unquote

import pydantic
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import S3Store

from eventray import Checkpoint, ConfigError

from ._config import ObjectStorageConnection, folder, parse_s3_url
from ._store import STORE_ERRORS, make_store, translate

log = logging.getLogger("eventray")

MANIFEST = "MANIFEST.json"
KEEP = 3
_FORMAT = 1
_ID_DIGITS = 12
_MAX_ID = 10**_ID_DIGITS - 1
_PART_SUFFIX = ".part"
_JOB_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ID = re.compile(r"[0-9]{12}")
_KIND = "object-storage checkpoints"


def _check_job(job: str) -> None:
    if not isinstance(job, str) or not _JOB_NAME.fullmatch(job):
        raise ValueError(f"job name must be letters, digits, '_' and '-', got {job!r}")


def _check_id(checkpoint_id: int) -> None:
    valid = isinstance(checkpoint_id, int) and not isinstance(checkpoint_id, bool)
    if not valid or not 0 <= checkpoint_id <= _MAX_ID:
        raise ValueError(f"checkpoint id must be an int from 0 to {_MAX_ID}, got "
                         f"{checkpoint_id!r}")


class ObjectStorageStore:
    """An ``er.CheckpointStore`` in a bucket: ``run(..., checkpoint_store=
    ObjectStorageStore("s3://bucket/prefix", endpoint_url=..., ...))``. The connection fields
    are those of ``object-storage-sink`` (``bucket``, ``endpoint_url``, ``access_key_id``,
    ``secret_access_key``, ``region``, ...); ``url`` may replace ``bucket`` and ``prefix``."""

    def __init__(self, url: str | None = None, /, *, prefix: str = "",
                 **connection: Any) -> None:
        try:
            if url is not None:
                if "bucket" in connection or prefix:
                    raise ValueError("give a URL or bucket and prefix, not both")
                connection["bucket"], prefix = parse_s3_url(url)
            self.prefix = folder(prefix)
        except ValueError as exc:
            raise ConfigError(str(exc), kind=_KIND,
                              field="prefix" if url is None else "url") from None
        try:
            self.config = ObjectStorageConnection(**connection)
        except pydantic.ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            field = str(problem["loc"][0]) if problem["loc"] else None
            raise ConfigError(problem["msg"], kind=_KIND, field=field) from None
        self._store: S3Store | None = None
        # (job, id) -> part file -> (size, sha256) of the parts this object wrote, so that
        # complete() reads back only parts written by another process
        self._written: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}

    def __repr__(self) -> str:
        return f"ObjectStorageStore('s3://{self.config.bucket}/{self.prefix}')"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config, self.prefix, self._store = state["config"], state["prefix"], None
        self._written = {}

    @property
    def store(self) -> S3Store:
        if self._store is None:
            self._store = make_store(self.config)
        return self._store

    def _dir(self, job: str, checkpoint_id: int) -> str:
        return f"{self.prefix}{job}/{checkpoint_id:0{_ID_DIGITS}d}/"

    async def _exists(self, path: str) -> bool:
        try:
            await self.store.head_async(path)
        except FileNotFoundError:
            return False
        except STORE_ERRORS as exc:
            raise translate(exc, _KIND, f"cannot read {path}") from exc
        return True

    async def _get(self, path: str) -> bytes:
        result = await self.store.get_async(path)
        return bytes(await result.bytes_async())

    async def write_part(self, job: str, checkpoint_id: int, name: str, data: bytes) -> None:
        """Store one part of a checkpoint that is not complete yet."""
        _check_job(job)
        _check_id(checkpoint_id)
        directory = self._dir(job, checkpoint_id)
        if await self._exists(directory + MANIFEST):
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        file = quote(name, safe="") + _PART_SUFFIX
        path = f"{directory}parts/{file}"
        data = bytes(data)
        written = self._written.setdefault((job, checkpoint_id), {})
        written.pop(file, None)  # unknown until the put succeeds
        try:
            await self.store.put_async(path, data)
        except STORE_ERRORS as exc:
            raise translate(exc, _KIND, f"cannot write {path}") from exc
        written[file] = (len(data), hashlib.sha256(data).hexdigest())

    async def complete(self, job: str, checkpoint_id: int) -> None:
        """Write the manifest of every part stored so far: the checkpoint is complete."""
        _check_job(job)
        _check_id(checkpoint_id)
        directory = self._dir(job, checkpoint_id)
        manifest_path = directory + MANIFEST
        if await self._exists(manifest_path):
            raise ValueError(f"checkpoint {checkpoint_id} of job {job!r} is already complete")
        parts: list[dict[str, Any]] = []
        written = self._written.pop((job, checkpoint_id), {})
        for stale in [key for key in self._written if key[0] == job and key[1] < checkpoint_id]:
            del self._written[stale]  # older checkpoints that never completed
        try:
            for meta in await self._list(directory + "parts/"):
                path = meta["path"]
                file = path.rsplit("/", 1)[-1]
                if not file.endswith(_PART_SUFFIX):
                    continue
                known = written.get(file)
                if known is None:  # written by another process: read it back
                    data = await self._get(path)
                    known = (len(data), hashlib.sha256(data).hexdigest())
                parts.append({"name": unquote(file[: -len(_PART_SUFFIX)]), "file": file,
                              "size": known[0], "sha256": known[1]})
            manifest = {"format": _FORMAT, "job": job, "id": checkpoint_id,
                        "created": time.time(), "parts": parts}
            await self.store.put_async(manifest_path, json.dumps(manifest, indent=1).encode(),
                                       mode="create")
        except (AlreadyExistsError, PreconditionError):
            raise ValueError(
                f"checkpoint {checkpoint_id} of job {job!r} is already complete") from None
        except STORE_ERRORS as exc:
            raise translate(exc, _KIND, f"cannot complete {directory}") from exc

    async def _list(self, prefix: str) -> list[Any]:
        found: list[Any] = []
        async for chunk in self.store.list(prefix):
            found.extend(chunk)
        return sorted(found, key=lambda meta: meta["path"])

    async def _ids(self, job: str) -> list[int]:
        """Ids of the checkpoints of ``job`` with any object stored, newest first."""
        listing = await self.store.list_with_delimiter_async(f"{self.prefix}{job}/")
        ids = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in listing["common_prefixes"]]
        return sorted((int(entry) for entry in ids if _ID.fullmatch(entry)), reverse=True)

    async def latest(self, job: str) -> Checkpoint | None:
        """The intact complete checkpoint with the highest id; damaged ones are skipped with
        a warning."""
        _check_job(job)
        try:
            for checkpoint_id in await self._ids(job):
                found = await self._load(job, checkpoint_id)
                if isinstance(found, Checkpoint):
                    return found
                if found is not None:
                    log.warning("checkpoint %s is corrupt, trying an older one: %s",
                                self._dir(job, checkpoint_id), found)
        except STORE_ERRORS as exc:
            raise translate(exc, _KIND, f"cannot read the checkpoints of {job!r}") from exc
        return None

    async def _load(self, job: str, checkpoint_id: int) -> Checkpoint | str | None:
        """The checkpoint, what is wrong with it, or None if it was never completed."""
        directory = self._dir(job, checkpoint_id)
        try:
            raw = await self._get(directory + MANIFEST)
        except FileNotFoundError:
            return None
        try:
            created, entries = _parse_manifest(raw, checkpoint_id)
        except ValueError as exc:
            return f"{MANIFEST} is unreadable: {exc}"
        parts: dict[str, bytes] = {}
        for name, file, size, sha256 in entries:
            what = f"part {name!r} ({file})"
            try:
                data = await self._get(f"{directory}parts/{file}")
            except FileNotFoundError:
                return f"{what} is missing"
            if len(data) != size:
                return f"{what} is {len(data)} bytes, the manifest says {size}"
            if hashlib.sha256(data).hexdigest() != sha256:
                return f"{what} has the wrong sha256 checksum"
            parts[name] = data
        return Checkpoint(job, checkpoint_id, parts, created)

    async def prune(self, job: str, keep: int = KEEP) -> None:
        """Delete all but the newest ``keep`` complete checkpoints, and every incomplete one
        not newer than the newest complete one."""
        _check_job(job)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int of at least 1, got {keep!r}")
        try:
            ids = await self._ids(job)
            complete = [i for i in ids if await self._exists(self._dir(job, i) + MANIFEST)]
            if not complete:
                return
            doomed = complete[keep:] + [i for i in ids if i not in complete and i < complete[0]]
            for checkpoint_id in sorted(doomed):
                await self._delete(self._dir(job, checkpoint_id))
        except STORE_ERRORS as exc:
            raise translate(exc, _KIND, f"cannot prune the checkpoints of {job!r}") from exc

    async def _delete(self, directory: str) -> None:
        """The manifest first (the checkpoint stops being complete), then the rest."""
        await self.store.delete_async(directory + MANIFEST)
        paths = [meta["path"] for meta in await self._list(directory)]
        if paths:
            await self.store.delete_async(paths)


def _parse_manifest(raw: bytes, checkpoint_id: int) -> tuple[float, list[tuple[str, str, int,
                                                                               str]]]:
    manifest: Any = json.loads(raw)
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError("not a manifest of a known format")
    if manifest.get("id") != checkpoint_id:
        raise ValueError(f"id {manifest.get('id')!r} does not match its place")
    created = manifest.get("created")
    parts = manifest.get("parts")
    if isinstance(created, bool) or not isinstance(created, int | float) \
            or not isinstance(parts, list):
        raise ValueError("bad 'created' or 'parts'")
    entries: list[tuple[str, str, int, str]] = []
    for part in parts:
        if not isinstance(part, dict):
            raise ValueError(f"bad part entry {part!r}")
        name, file, size, sha256 = (part.get(k) for k in ("name", "file", "size", "sha256"))
        if not (isinstance(name, str) and isinstance(file, str) and isinstance(size, int)
                and isinstance(sha256, str)) or "/" in file or not file.endswith(_PART_SUFFIX):
            raise ValueError(f"bad part entry {part!r}")
        entries.append((name, file, size, sha256))
    return float(created), entries

