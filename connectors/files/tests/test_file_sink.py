"""file-sink: lines appended, on disk (flushed and fsynced) once a checkpoint completes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from files_helpers import next_checkpoint

import eventray as er
from eventray.testing import Recorder
from eventray_files import FileSink


async def test_lines_are_on_disk_and_fsynced_after_a_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out" / "lines.txt"  # the directory is created too
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    async with er.connect("memory") as bus:
        job = await (bus.from_topic("in").sink(FileSink(path=str(path)))
                     .run("lines", checkpoint_interval=0.05, checkpoint_store=er.MemoryStore()))
        topic = bus.topic("in")
        for word in ("alpha", "beta", "gamma"):
            await topic.publish(word)
        await topic.flush()
        await next_checkpoint(job)  # one that began after the lines were written
        # still running: what the checkpoint covers was written out (a few bytes stay in
        # Python's buffer otherwise) and fsynced
        assert path.read_text() == "alpha\nbeta\ngamma\n"
        assert synced
        await job.stop(drain=True)


async def test_formats_and_bad_values(tmp_path: Path) -> None:
    async def write(fmt: str, values: list[Any]) -> tuple[str, list[er.DeadLetter]]:
        path = tmp_path / f"{fmt}.out"
        async with er.connect("memory") as bus:
            letters = Recorder()
            bus.dead_letters >> letters
            await bus.from_values(*values).sink({"kind": "file-sink", "path": str(path),
                                                 "value_format": fmt}).collect()
            await bus.dead_letters.flush()
        return path.read_text(), list(letters.values)

    text, letters = await write("text", ["a", 1, "two\nlines", "ends\n"])
    assert text == "a\n1\nends\n"
    assert [letter.value for letter in letters] == ["two\nlines"]
    text, letters = await write("json", [{"a": [1]}, "é", {1, 2}])
    assert text == '{"a": [1]}\n"é"\n'
    assert [letter.value for letter in letters] == [{1, 2}]
    text, letters = await write("bytes", [b"raw", b"nl\n", "not bytes"])
    assert text == "raw\nnl\n"
    assert len(letters) == 1


async def test_a_resumed_sink_appends(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("old\n")
    sink = FileSink(path=str(path))
    await sink.start()
    await sink.write([er.Event("new")])
    await sink.stop()
    assert path.read_text() == "old\nnew\n"
    assert sink.syncs == 1


@pytest.mark.parametrize(("fields", "field"), [
    ({"path": ""}, "path"),
    ({"path": "x", "value_format": "csv"}, "value_format"),
    ({"path": "x", "encoding": "nope"}, "encoding"),
])
def test_bad_configs_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(er.ConfigError) as caught:
        er.connector("file-sink", **fields)
    assert (caught.value.kind, caught.value.field) == ("file-sink", field)
