"""Checkpoint stores: the semantics both stores share, then DirectoryStore's disk layout and its
handling of corrupt and left-over checkpoints, then ``open_store``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from eventray._model.errors import ConfigError
from eventray._runtime.checkpoint_store import (
    DEFAULT_ROOT,
    KEEP,
    CheckpointStore,
    DirectoryStore,
    MemoryStore,
    open_store,
)

Store = MemoryStore | DirectoryStore


@pytest.fixture(params=["memory", "directory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return DirectoryStore(tmp_path / "checkpoints")


def stored_ids(store: Store, job: str) -> tuple[list[int], list[int]]:
    """(complete ids, partial ids) the store holds for ``job``, read from its insides."""
    if isinstance(store, MemoryStore):
        return (sorted(store._complete.get(job, {})), sorted(store._partial.get(job, {})))
    job_dir = store.root / job
    entries = os.listdir(job_dir) if job_dir.exists() else []
    complete = sorted(int(e) for e in entries if e.isdigit())
    partial = sorted(int(e.removesuffix(".partial")) for e in entries if e.endswith(".partial"))
    return complete, partial


async def save(store: CheckpointStore, job: str, checkpoint_id: int,
               parts: dict[str, bytes]) -> None:
    for name, data in parts.items():
        await store.write_part(job, checkpoint_id, name, data)
    await store.complete(job, checkpoint_id)


def parts_of(checkpoint_id: int) -> dict[str, bytes]:
    return {"job.map.0": b"map %d" % checkpoint_id, "_job": b"offsets %d" % checkpoint_id}


# Shared semantics.

def test_both_stores_are_checkpoint_stores(tmp_path: Path) -> None:
    assert isinstance(MemoryStore(), CheckpointStore)
    assert isinstance(DirectoryStore(tmp_path), CheckpointStore)
    assert not isinstance(object(), CheckpointStore)


async def test_parts_round_trip(store: Store) -> None:
    parts = {"job.map+reduce'.0": b"\x00\x01binary\xff", "job.sink.1": b"", "_job": b"x" * 100_000}
    before = time.time()
    await save(store, "job", 7, parts)
    checkpoint = await store.latest("job")
    assert checkpoint is not None
    assert (checkpoint.job, checkpoint.id, checkpoint.parts) == ("job", 7, parts)
    assert before <= checkpoint.created <= time.time()


async def test_no_checkpoint_is_none(store: Store) -> None:
    assert await store.latest("job") is None
    await store.write_part("job", 1, "_job", b"not complete")
    assert await store.latest("job") is None


async def test_a_checkpoint_with_no_parts_is_empty(store: Store) -> None:
    await store.complete("job", 3)
    checkpoint = await store.latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (3, {})


async def test_latest_is_the_newest_complete_one(store: Store) -> None:
    for checkpoint_id in (2, 5, 4):
        await save(store, "job", checkpoint_id, parts_of(checkpoint_id))
    checkpoint = await store.latest("job")
    assert checkpoint is not None
    assert (checkpoint.id, checkpoint.parts) == (5, parts_of(5))


async def test_an_incomplete_newer_checkpoint_is_invisible(store: Store) -> None:
    await save(store, "job", 1, parts_of(1))
    await store.write_part("job", 2, "job.map.0", b"half written")
    checkpoint = await store.latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (1, parts_of(1))
    await store.complete("job", 2)
    checkpoint = await store.latest("job")
    assert checkpoint is not None
    assert (checkpoint.id, checkpoint.parts) == (2, {"job.map.0": b"half written"})


async def test_parts_written_concurrently_all_arrive(store: Store) -> None:
    parts = {f"job.map.{i}": b"%d" % i for i in range(20)}
    await asyncio.gather(*(store.write_part("job", 1, n, d) for n, d in parts.items()))
    await store.complete("job", 1)
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.parts == parts


async def test_a_rewritten_part_replaces_the_first(store: Store) -> None:
    await store.write_part("job", 1, "_job", b"first")
    await store.write_part("job", 1, "_job", b"second")
    await store.complete("job", 1)
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.parts == {"_job": b"second"}


async def test_latest_returns_a_copy(store: Store) -> None:
    await save(store, "job", 1, parts_of(1))
    checkpoint = await store.latest("job")
    assert checkpoint is not None
    checkpoint.parts.clear()
    again = await store.latest("job")
    assert again is not None and again.parts == parts_of(1)


async def test_prune_keeps_the_newest_and_newer_partial_ones(store: Store) -> None:
    await store.write_part("job", 1, "_job", b"abandoned")
    for checkpoint_id in (2, 3, 4, 5):
        await save(store, "job", checkpoint_id, parts_of(checkpoint_id))
    await store.write_part("job", 6, "_job", b"in progress")
    await store.prune("job", keep=2)
    assert stored_ids(store, "job") == ([4, 5], [6])
    checkpoint = await store.latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (5, parts_of(5))
    await store.complete("job", 6)  # the partial one kept its part
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.parts == {"_job": b"in progress"}


async def test_prune_keeps_three_by_default(store: Store) -> None:
    for checkpoint_id in range(1, 6):
        await save(store, "job", checkpoint_id, parts_of(checkpoint_id))
    await store.prune("job")
    assert stored_ids(store, "job") == (list(range(6 - KEEP, 6)), [])


async def test_prune_without_complete_checkpoints_keeps_partial_ones(store: Store) -> None:
    await store.write_part("job", 1, "_job", b"in progress")
    await store.prune("job", keep=1)
    await store.prune("nothing", keep=1)
    assert stored_ids(store, "job") == ([], [1])


@pytest.mark.parametrize("keep", [0, -1])
async def test_prune_must_keep_one(store: Store, keep: int) -> None:
    await save(store, "job", 1, parts_of(1))
    with pytest.raises(ValueError, match="keep"):
        await store.prune("job", keep=keep)
    assert stored_ids(store, "job") == ([1], [])


async def test_jobs_are_independent(store: Store) -> None:
    await save(store, "job-a", 1, {"_job": b"a"})
    await save(store, "job_b", 5, {"_job": b"b"})
    await save(store, "job_b", 6, {"_job": b"b6"})
    await store.write_part("job_b", 0, "_job", b"old partial")
    await store.prune("job_b", keep=1)
    await save(store, "job-a", 5, {"_job": b"a5"})  # the same id as job_b's, no clash
    a, b = await store.latest("job-a"), await store.latest("job_b")
    assert a is not None and (a.job, a.id, a.parts) == ("job-a", 5, {"_job": b"a5"})
    assert b is not None and (b.job, b.id, b.parts) == ("job_b", 6, {"_job": b"b6"})
    assert stored_ids(store, "job-a") == ([1, 5], [])


async def test_completing_twice_is_an_error(store: Store) -> None:
    await save(store, "job", 1, parts_of(1))
    with pytest.raises(ValueError, match="already complete"):
        await store.complete("job", 1)
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.parts == parts_of(1)


async def test_writing_to_a_complete_checkpoint_is_an_error(store: Store) -> None:
    await save(store, "job", 1, parts_of(1))
    with pytest.raises(ValueError, match="already complete"):
        await store.write_part("job", 1, "job.map.0", b"late")
    with pytest.raises(ValueError, match="already complete"):
        await store.write_part("job", 1, "new part", b"late")
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.parts == parts_of(1)
    assert stored_ids(store, "job") == ([1], [])


@pytest.mark.parametrize("job", ["", "../escape", "a/b", "a b", "job.1", "ü"])
async def test_bad_job_names_are_rejected(store: Store, job: str) -> None:
    with pytest.raises(ValueError, match="job name"):
        await store.write_part(job, 1, "_job", b"")
    with pytest.raises(ValueError, match="job name"):
        await store.latest(job)


@pytest.mark.parametrize("checkpoint_id", [-1, 10**12, True])
async def test_bad_ids_are_rejected(store: Store, checkpoint_id: int) -> None:
    with pytest.raises(ValueError, match="checkpoint id"):
        await store.complete("job", checkpoint_id)


# DirectoryStore: layout, durability across instances, corruption.

async def test_directory_layout(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    await store.write_part("job", 42, "job.map+reduce'.0", b"abc")
    assert os.listdir(tmp_path / "job") == ["000000000042.partial"]
    await store.complete("job", 42)
    directory = tmp_path / "job" / "000000000042"
    assert os.listdir(tmp_path / "job") == ["000000000042"]
    file = quote("job.map+reduce'.0", safe="") + ".part"
    assert sorted(os.listdir(directory)) == ["MANIFEST.json", file]
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    assert manifest["id"] == 42 and isinstance(manifest["created"], float)
    assert manifest["parts"] == [{
        "name": "job.map+reduce'.0", "file": file, "size": 3,
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }]


async def test_a_new_store_on_the_same_root_reads_what_was_completed(tmp_path: Path) -> None:
    await save(DirectoryStore(tmp_path), "job", 1, parts_of(1))
    checkpoint = await DirectoryStore(tmp_path).latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (1, parts_of(1))


async def test_odd_part_names_round_trip(tmp_path: Path) -> None:
    parts = {name: name.encode() for name in
             ["job.map+reduce'.0", "a:b", "x/y", "../../up", "%41", "..", "", "ü ß", "_job"]}
    await save(DirectoryStore(tmp_path), "job", 1, parts)
    checkpoint = await DirectoryStore(tmp_path).latest("job")
    assert checkpoint is not None and checkpoint.parts == parts
    assert sorted(os.listdir(tmp_path)) == ["job"]  # nothing escaped the job directory


def flip_a_byte(directory: Path) -> None:
    path = directory / "job.map.0.part"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(directory: Path) -> None:
    path = directory / "job.map.0.part"
    path.write_bytes(path.read_bytes()[:-1])


def delete(directory: Path) -> None:
    (directory / "job.map.0.part").unlink()


def garble_manifest(directory: Path) -> None:
    (directory / "MANIFEST.json").write_bytes(b'{"id": 2, "parts": [tru')


def remove_manifest(directory: Path) -> None:
    (directory / "MANIFEST.json").unlink()


@pytest.mark.parametrize(("damage", "problem"), [
    (flip_a_byte, "part 'job.map.0' (job.map.0.part) has the wrong sha256 checksum"),
    (truncate, "part 'job.map.0' (job.map.0.part) is truncated"),
    (delete, "part 'job.map.0' (job.map.0.part) is missing"),
    (garble_manifest, "MANIFEST.json is unreadable"),
    (remove_manifest, "MANIFEST.json is missing"),
])
async def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None],
    problem: str,
) -> None:
    store = DirectoryStore(tmp_path)
    for checkpoint_id in (1, 2):
        await save(store, "job", checkpoint_id, parts_of(checkpoint_id))
    damaged = tmp_path / "job" / "000000000002"
    damage(damaged)
    with caplog.at_level(logging.WARNING, logger="eventray"):
        checkpoint = await store.latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (1, parts_of(1))
    [record] = [r for r in caplog.records if r.name == "eventray"]
    assert record.levelno == logging.WARNING
    assert str(damaged) in record.getMessage() and problem in record.getMessage()


async def test_only_corrupt_checkpoints_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DirectoryStore(tmp_path)
    await save(store, "job", 1, parts_of(1))
    flip_a_byte(tmp_path / "job" / "000000000001")
    with caplog.at_level(logging.WARNING, logger="eventray"):
        assert await store.latest("job") is None
    assert any("000000000001" in r.getMessage() for r in caplog.records)


async def test_stray_entries_are_ignored(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    await save(store, "job", 1, parts_of(1))
    (tmp_path / "job" / "99").mkdir()
    (tmp_path / "job" / "000000000099.bak").mkdir()
    (tmp_path / "job" / "000000000098").write_text("a file, not a directory")
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.id == 1
    await store.prune("job", keep=1)
    assert checkpoint == await store.latest("job")


async def test_a_crashed_checkpoint_is_invisible_then_pruned(tmp_path: Path) -> None:
    before_crash = DirectoryStore(tmp_path)
    await save(before_crash, "job", 1, parts_of(1))
    for name, data in parts_of(2).items():
        await before_crash.write_part("job", 2, name, data)
    del before_crash  # the process dies before complete()

    store = DirectoryStore(tmp_path)
    checkpoint = await store.latest("job")
    assert checkpoint is not None and checkpoint.id == 1
    await store.prune("job")
    assert stored_ids(store, "job") == ([1], [2])  # may still be in progress: kept
    await save(store, "job", 3, parts_of(3))
    await store.prune("job")
    assert stored_ids(store, "job") == ([1, 3], [])
    checkpoint = await store.latest("job")
    assert checkpoint is not None and (checkpoint.id, checkpoint.parts) == (3, parts_of(3))


# open_store.

def test_open_store_defaults_to_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(None)
    assert isinstance(store, DirectoryStore) and store.root == tmp_path / DEFAULT_ROOT
    assert os.listdir(tmp_path) == []  # nothing created until a checkpoint is written


@pytest.mark.parametrize("as_path", [str, Path])
def test_open_store_takes_a_path(
    tmp_path: Path, as_path: Callable[[Path], str | os.PathLike[str]]
) -> None:
    store = open_store(as_path(tmp_path / "here"))
    assert isinstance(store, DirectoryStore) and store.root == tmp_path / "here"


def test_open_store_takes_a_store() -> None:
    store = MemoryStore()
    assert open_store(store) is store


@pytest.mark.parametrize("garbage", [42, b"/bytes/path", object(), ["dir"]])
def test_open_store_rejects_anything_else(garbage: object) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(garbage)  # type: ignore[arg-type]
    assert caught.value.field == "checkpoint_store"
    assert "checkpoint_store" in str(caught.value)
    assert type(garbage).__qualname__ in str(caught.value)


async def test_a_fresh_run_numbers_after_a_corrupt_newest_checkpoint(tmp_path: Path) -> None:
    import eventray as er
    from eventray.testing import Recorder

    async def run_once() -> None:
        async with er.connect("memory") as bus:
            job = await (bus.from_values(1, 2, 3).map(lambda v: v + 1).sink(Recorder())
                         .run("again", checkpoint_store=str(tmp_path)))
            await job.wait()

    await run_once()
    await run_once()
    newest = max((tmp_path / "again").iterdir())
    part = next(p for p in newest.iterdir() if p.suffix == ".part")
    part.write_bytes(part.read_bytes() + b"rot")  # the newest is corrupt now
    store = DirectoryStore(tmp_path)
    assert await store.highest_id("again") == int(newest.name)
    await run_once()  # its checkpoint goes after the corrupt one, not onto it
    latest = await store.latest("again")
    assert latest is not None and latest.id == int(newest.name) + 1
