"""file-source: lines and whole files, directories, following, positions, bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from files_helpers import WAIT, next_checkpoint, until

import eventray as er
from eventray.testing import Recorder
from eventray_files import FileSource


async def collect(source: Any) -> tuple[list[Any], list[er.DeadLetter]]:
    """Everything a bounded source gives a stream, and its dead letters."""
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        values = await bus.from_source(source).collect()
        await bus.dead_letters.flush()
        return values, list(letters.values)


async def test_lines_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("one\ntwo\r\n\nlast without newline")
    values, letters = await collect(FileSource(path=str(path)))
    assert values == ["one", "two", "", "last without newline"]
    assert letters == []


async def test_whole_files_of_a_directory_recursive(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"\x00B")
    (tmp_path / "a.bin").write_bytes(b"A\nA")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.bin").write_bytes(b"C")
    flat, _ = await collect(er.connector("file-source", path=str(tmp_path),
                                         value_format="bytes"))
    assert flat == [b"A\nA", b"\x00B", b""]
    deep, _ = await collect(er.connector("file-source", path=str(tmp_path),
                                         value_format="bytes", recursive=True))
    assert deep == [b"A\nA", b"\x00B", b"", b"C"]


async def test_directory_lines_in_name_order_with_glob(tmp_path: Path) -> None:
    (tmp_path / "2.log").write_text("c\nd\n")
    (tmp_path / "1.log").write_text("a\nb\n")
    (tmp_path / "skip.txt").write_text("x\n")
    values, _ = await collect(FileSource(path=str(tmp_path), glob="*.log"))
    assert values == ["a", "b", "c", "d"]


async def test_bad_encoding_and_overlong_lines_are_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"good\n\xff\xfe bad\n" + b"x" * 5000 + b"\nafter\n")
    source = FileSource(path=str(path), max_line_bytes=1000)
    values, letters = await collect(source)
    assert values == ["good", "after"]
    assert [letter.value for letter in letters] == [b"\xff\xfe bad\n", b"x" * 200]
    assert "UnicodeDecodeError" in letters[0].error and "byte 5 of mixed.txt" in letters[0].error
    assert "longer than max_line_bytes" in letters[1].error
    assert all(letter.stage == "file-source" for letter in letters)


async def test_follow_reads_appended_lines_and_holds_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("first\nsecond (partial")
    source = FileSource(path=str(path), follow=True, poll_interval=0.01)
    assert source.bounded is False
    await source.start()
    got = [e.value for e in await source.read(100) or []]
    assert got == ["first"]
    assert await source.read(100) == []  # nothing complete yet: waits, then returns none
    with path.open("a") as file:
        file.write(" done)\nthird\n")
    got = [e.value for e in await source.read(100) or []]
    assert got == ["second (partial done)", "third"]
    assert source.snapshot()["offsets"] == {"app.log": len(path.read_bytes())}
    source.stop_reading()
    assert await source.read(100) is None


async def test_a_rotated_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("old 1\nold 2\n")
    source = FileSource(path=str(path), follow=True, poll_interval=0.01)
    assert [e.value for e in await source.read(100) or []] == ["old 1", "old 2"]
    path.rename(tmp_path / "app.log.1")  # rotated: a new, longer file takes the name
    path.write_text("new 1\nnew 2\nnew 3\n")
    assert [e.value for e in await source.read(100) or []] == ["new 1", "new 2", "new 3"]
    path.write_text("cut\n")  # truncated in place
    assert [e.value for e in await source.read(100) or []] == ["cut"]
    path.rename(tmp_path / "app.log.2")  # rotated again, the new file empty at first
    path.write_text("")
    assert await source.read(100) == []
    path.write_text("fresh line one\n")
    assert [e.value for e in await source.read(100) or []] == ["fresh line one"]


async def test_follow_notices_new_files_in_a_directory(tmp_path: Path) -> None:
    async with er.connect("memory") as bus:
        got = Recorder()
        job = await (bus.from_source(FileSource(path=str(tmp_path), follow=True,
                                                poll_interval=0.01))
                     .sink(got).run("tail-dir"))
        (tmp_path / "a.log").write_text("a1\n")
        assert await got.wait_for(1, timeout=WAIT) == ["a1"]
        (tmp_path / "b.log").write_text("b1\n")
        with (tmp_path / "a.log").open("a") as file:
            file.write("a2\n")
        assert sorted(await got.wait_for(3, timeout=WAIT)) == ["a1", "a2", "b1"]
        await job.stop(drain=True)


async def test_split_by_file_reads_each_line_once(tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / f"{i}.txt").write_text(f"{i}a\n{i}b\n")
    async with er.connect("memory") as bus:
        values = await (bus.from_source(FileSource(path=str(tmp_path))).set_parallelism(3)
                        .collect())
    assert sorted(values) == sorted(f"{i}{c}" for i in range(8) for c in "ab")


async def test_restore_continues_after_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{i}\n" for i in range(10)))
    first = FileSource(path=str(path))
    got = [e.value for e in await first.read(4) or []]
    assert got == ["0", "1", "2", "3"]
    second = FileSource(path=str(path))
    second.restore(first.snapshot())
    rest = [e.value for e in await second.read(100) or []]
    assert rest == [str(i) for i in range(4, 10)]
    assert await second.read(100) is None


async def test_checkpoint_then_kill_then_resume_counts_every_line_once(tmp_path: Path) -> None:
    """Stopped without a drain (as a crash would) after a checkpoint and resumed from it,
    the keyed counts are exact: no line lost, none counted twice."""
    path = tmp_path / "orders.log"
    path.write_text("".join(f"u{i % 3}\n" for i in range(90)))
    store = er.MemoryStore()

    def counting(bus: er.Bus, last: dict[str, int], resume: bool) -> Any:
        def show(kv: tuple[str, int]) -> None:
            last[kv[0]] = kv[1]
            emitted.append(kv)

        return (bus.from_source(FileSource(path=str(path), follow=True, poll_interval=0.01))
                .map(lambda user: (user, 1))
                .key_by(lambda kv: kv[0])
                .reduce(lambda a, b: (a[0], a[1] + b[1]))
                .sink(show)
                .run("orders", checkpoint_interval=0.05, checkpoint_store=store,
                     resume=resume))

    emitted: list[tuple[str, int]] = []
    async with er.connect("memory") as bus:
        last: dict[str, int] = {}
        job = await counting(bus, last, resume=False)
        await until(lambda: sum(last.values()) == 90)
        await next_checkpoint(job)
        with path.open("a") as file:  # read or not before the kill: either way counted once
            file.write("".join(f"u{i % 3}\n" for i in range(30)) + "u0")
        await job.stop(drain=False)

    emitted.clear()
    async with er.connect("memory") as bus:
        last = {}
        job = await counting(bus, last, resume=True)
        with path.open("a") as file:
            file.write(" and more\nu1\n")  # completes the partial line, adds one
        await until(lambda: last.get("u1") == 41 and "u0 and more" in last)
        await job.stop(drain=True)
    assert last == {"u0": 40, "u1": 41, "u2": 40, "u0 and more": 1}
    assert len(emitted) <= 32  # resumed: only lines after the checkpoint were read again


@pytest.mark.parametrize(("fields", "field"), [
    ({"path": "/no/such/place"}, "path"),
    ({"path": "."}, None),
    ({"path": ".", "value_format": "json"}, "value_format"),
    ({"path": ".", "encoding": "klingon"}, "encoding"),
    ({"path": ".", "encoding": "utf-16"}, "encoding"),
    ({"path": ".", "poll_interval": 0.0}, "poll_interval"),
    ({"path": ".", "folow": True}, "folow"),
])
def test_bad_configs_name_the_field(fields: dict[str, Any], field: str | None) -> None:
    if field is None:
        assert er.connector("file-source", **fields).config.path == "."
        return
    with pytest.raises(er.ConfigError) as caught:
        er.connector("file-source", **fields)
    assert caught.value.kind == "file-source"
    assert caught.value.field == field


def lines(prefix: str, count: int) -> str:
    return "".join(f"{prefix}{i}\n" for i in range(count))


async def read_all(source: FileSource) -> list[Any]:
    """What ``read`` hands out until it has nothing new."""
    got: list[Any] = []
    while batch := await source.read(1000):
        got += [event.value for event in batch]
    return got


async def test_a_file_rewritten_under_its_name_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text(lines("old", 100))
    source = FileSource(path=str(path), follow=True, poll_interval=0.01)
    assert len(await read_all(source)) == 100
    path.write_text(lines("new", 150))  # same inode, larger than the old offset
    assert await read_all(source) == [f"new{i}" for i in range(150)]  # none skipped


async def test_a_file_replaced_while_the_job_was_down_is_read_from_its_start(
        tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text(lines("old", 10))
    first = FileSource(path=str(path), follow=True, poll_interval=0.01)
    assert len(await read_all(first)) == 10
    state = first.snapshot()
    path.unlink()
    path.write_text(lines("new", 20))  # rotated while nothing ran
    resumed = FileSource(path=str(path), follow=True, poll_interval=0.01)
    resumed.restore(state)
    assert await read_all(resumed) == [f"new{i}" for i in range(20)]


async def test_a_rotated_file_in_a_followed_directory_is_not_read_twice(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text(lines("a", 10))
    source = FileSource(path=str(tmp_path), follow=True, poll_interval=0.01)
    assert len(await read_all(source)) == 10
    with path.open("a") as file:
        file.write("written just before the rotation\n")
    path.rename(tmp_path / "app.log.1")
    path.write_text(lines("b", 3))
    got = await read_all(source)
    assert sorted(got) == sorted(["written just before the rotation", "b0", "b1", "b2"])


async def test_a_replacement_with_the_same_header_is_read_from_its_start(tmp_path: Path) -> None:
    header = "timestamp,customer,order,product,quantity,price,currency,country,method," * 2
    path = tmp_path / "report.csv"
    path.write_text(header + "\n" + lines("old", 10))
    source = FileSource(path=str(path), follow=True, poll_interval=0.01)
    assert len(await read_all(source)) == 11
    fresh = tmp_path / "next.csv.tmp"
    fresh.write_text(header + "\n" + lines("new", 20))
    os.replace(fresh, path)  # a new inode, with the same first bytes
    assert await read_all(source) == [header] + [f"new{i}" for i in range(20)]


async def test_a_chain_of_rotations_reads_each_line_once(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    source = FileSource(path=str(tmp_path), follow=True, poll_interval=0.01)
    seen: list[Any] = []
    for turn in range(3):
        with path.open("a") as file:
            file.write(lines(f"t{turn}-", 5))
        seen += await read_all(source)
        for older in (2, 1):  # app.log.1 -> app.log.2, app.log -> app.log.1
            src = tmp_path / (f"app.log.{older - 1}" if older > 1 else "app.log")
            if src.exists():
                src.rename(tmp_path / f"app.log.{older}")
    seen += await read_all(source)
    assert sorted(seen) == sorted(f"t{turn}-{i}" for turn in range(3) for i in range(5))
