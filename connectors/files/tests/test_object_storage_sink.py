"""object-storage-sink against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_files import ObjectStorageSink
from eventray_files.testing import S3Server


async def run_into(sink: Any, values: list[Any], batch_size: int = 100) -> list[er.DeadLetter]:
    """Run ``values`` through a stream into ``sink``; the dead letters that came of it."""
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        job = await bus.from_values(*values).sink(sink).run("to-s3", batch_size=batch_size)
        await job.wait()
        await bus.dead_letters.flush()
        return list(letters.values)


async def test_one_object_per_batch_as_json_lines(s3: S3Server, bucket: str) -> None:
    sink = ObjectStorageSink(bucket=bucket, prefix="orders/", **s3.options)
    values = [{"id": i, "user": f"u{i % 3}"} for i in range(10)]
    assert await run_into(sink, values, batch_size=4) == []
    objects = s3.objects(bucket)
    names = sorted(objects)
    assert len(names) == 3  # batches of 4, 4 and 2
    assert all(n.startswith(f"orders/{sink.run}-") and n.endswith(".jsonl") for n in names)
    assert [n[-16:-6] for n in names] == ["0000000000", "0000000001", "0000000002"]
    lines = [json.loads(line) for n in names for line in objects[n].splitlines()]
    assert lines == values


async def test_one_object_per_event(s3: S3Server, bucket: str) -> None:
    sink = er.connector("object-storage-sink", bucket=bucket, prefix="raw/", batch=False,
                        value_format="bytes", **s3.options)
    assert await run_into(sink, [b"\x00\x01", b"two", b""]) == []
    objects = s3.objects(bucket)
    assert [objects[name] for name in sorted(objects)] == [b"\x00\x01", b"two", b""]
    assert all(name.endswith(".bin") for name in objects)


async def test_named_objects_are_written_under_their_key(s3: S3Server, bucket: str) -> None:
    """How a whole log is uploaded: a {"key", "body"} event, written again harmlessly."""
    sink = er.connector("object-storage-sink", url=f"s3://{bucket}/jobs", **s3.options)
    log = "line 1\nline 2\n"
    named = {"key": "job-1/driver.log", "body": log, "content_type": "text/plain"}
    assert await run_into(sink, [named, named, {"key": "job-1/raw", "body": b"\xff"}]) == []
    assert s3.objects(bucket) == {"jobs/job-1/driver.log": log.encode(),
                                  "jobs/job-1/raw": b"\xff"}
    head = s3.client().head_object(Bucket=bucket, Key="jobs/job-1/driver.log")
    assert head["ContentType"] == "text/plain"


async def test_put_object_writes_one_named_object(s3: S3Server, bucket: str) -> None:
    sink = ObjectStorageSink(bucket=bucket, prefix="logs/", **s3.options)
    await sink.start()
    try:
        assert await sink.put_object("a.log", "hello\n") == "logs/a.log"
    finally:
        await sink.stop()
    assert s3.objects(bucket) == {"logs/a.log": b"hello\n"}


async def test_bad_values_are_dead_letters_and_the_rest_is_written(s3: S3Server,
                                                                   bucket: str) -> None:
    sink = ObjectStorageSink(bucket=bucket, value_format="text", **s3.options)
    letters = await run_into(sink, ["a", "two\nlines", "b", {"key": "/abs", "body": "x"}])
    assert sorted(str(letter.value) for letter in letters) == [
        "two\nlines", "{'key': '/abs', 'body': 'x'}"]
    assert all(isinstance(letter.error, str) and letter.error for letter in letters)
    (body,) = s3.objects(bucket).values()
    assert body == b"a\nb\n"


async def test_a_missing_bucket_makes_dead_letters_naming_it(s3: S3Server) -> None:
    sink = ObjectStorageSink(bucket="no-such-bucket", **s3.options)
    letters = await run_into(sink, [1, 2])
    assert [letter.value for letter in letters] == [1, 2]
    assert "no-such-bucket" in letters[0].error


async def test_copies_write_under_their_own_runs(s3: S3Server, bucket: str) -> None:
    """Stage instances on Ray each hold a copy: no copy overwrites another's objects."""
    import copy

    sink = ObjectStorageSink(bucket=bucket, **s3.options)
    twin = copy.deepcopy(sink)
    for copy_ in (sink, twin):
        await copy_.start()
        await copy_.write([er.Event(copy_ is sink)])
        await copy_.stop()
    assert sink.run != twin.run
    objects = s3.objects(bucket)
    assert sorted(objects.values()) == [b"false\n", b"true\n"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"bucket": "Bad_Bucket"}, "bucket"),
    ({"bucket": "ab"}, "bucket"),
    ({"bucket": "ok-bucket", "endpoint_url": "127.0.0.1:9000"}, "endpoint_url"),
    ({"bucket": "ok-bucket", "endpoint_url": "http://127.0.0.1:9000/bucket"}, "endpoint_url"),
    ({"bucket": "ok-bucket", "access_key_id": "k"}, "secret_access_key"),
    ({"bucket": "ok-bucket", "value_format": "xml"}, "value_format"),
    ({"bucket": "ok-bucket", "value_format": "bytes"}, "value_format"),
    ({"bucket": "ok-bucket", "prefix": "a/../b"}, "prefix"),
    ({"bucket": "ok-bucket", "bukcet": "x"}, "bukcet"),
])
def test_bad_configs_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(er.ConfigError) as caught:
        er.connector("object-storage-sink", **fields)
    assert caught.value.kind == "object-storage-sink"
    assert caught.value.field == field


def test_a_bad_url_is_a_config_error() -> None:
    with pytest.raises(er.ConfigError, match="s3://bucket/prefix"):
        er.connector("object-storage-sink", url="http://bucket/prefix")
