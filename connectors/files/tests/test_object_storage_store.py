"""ObjectStorageStore: the CheckpointStore protocol in a bucket (moto on 127.0.0.1), and a
checkpointed job resumed from it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from files_helpers import next_checkpoint, until

import eventray as er
from eventray_files import FileSource, ObjectStorageStore
from eventray_files.testing import S3Server


def store_in(s3: S3Server, bucket: str) -> ObjectStorageStore:
    return ObjectStorageStore(f"s3://{bucket}/checkpoints", **s3.options)


async def test_only_complete_checkpoints_are_read_back(s3: S3Server, bucket: str) -> None:
    store = store_in(s3, bucket)
    assert isinstance(store, er.CheckpointStore)
    assert await store.latest("job") is None
    await store.write_part("job", 1, "stage.0", b"one")
    await store.write_part("job", 1, "_job", b"{}")
    await store.write_part("job", 1, "stage.0", b"one again")  # replaces the first
    assert await store.latest("job") is None  # written, not complete
    await store.complete("job", 1)
    await store.write_part("job", 2, "stage.0", b"two (never completed)")
    found = await store.latest("job")
    assert found is not None
    assert (found.job, found.id, found.parts) == ("job", 1, {"_job": b"{}",
                                                             "stage.0": b"one again"})
    with pytest.raises(ValueError, match="already complete"):
        await store.write_part("job", 1, "late", b"x")
    with pytest.raises(ValueError, match="already complete"):
        await store.complete("job", 1)
    manifest = json.loads(s3.objects(bucket)["checkpoints/job/000000000001/MANIFEST.json"])
    assert sorted(part["name"] for part in manifest["parts"]) == ["_job", "stage.0"]


async def test_parts_written_by_another_process_are_measured(s3: S3Server,
                                                             bucket: str) -> None:
    writer, completer = store_in(s3, bucket), store_in(s3, bucket)
    await writer.write_part("job", 7, "stage.1", b"from a worker")
    await completer.write_part("job", 7, "_job", b"{}")
    await completer.complete("job", 7)
    found = await writer.latest("job")
    assert found is not None
    assert found.parts == {"stage.1": b"from a worker", "_job": b"{}"}


async def test_a_corrupt_checkpoint_is_skipped_with_a_warning(
        s3: S3Server, bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    store = store_in(s3, bucket)
    for checkpoint_id in (1, 2, 3):
        await store.write_part("job", checkpoint_id, "a/b", f"state {checkpoint_id}".encode())
        await store.complete("job", checkpoint_id)
    s3.put(bucket, "checkpoints/job/000000000003/parts/a%2Fb.part", b"state 3 tampered")
    s3.put(bucket, "checkpoints/job/000000000002/MANIFEST.json", b"{not json")
    with caplog.at_level(logging.WARNING, logger="eventray"):
        found = await store.latest("job")
    assert found is not None
    assert (found.id, found.parts) == (1, {"a/b": b"state 1"})
    assert "000000000003" in caplog.text and "000000000002" in caplog.text


async def test_prune_keeps_the_newest(s3: S3Server, bucket: str) -> None:
    store = store_in(s3, bucket)
    for checkpoint_id in range(1, 6):
        await store.write_part("job", checkpoint_id, "p", b"x")
        await store.complete("job", checkpoint_id)
    await store.write_part("job", 0, "stale", b"x")  # an old incomplete one
    await store.write_part("job", 9, "p", b"x")  # newer, in progress: kept
    await store.prune("job", keep=2)
    names = sorted(s3.objects(bucket, "checkpoints/job/"))
    ids = sorted({name.split("/")[2] for name in names})
    assert ids == ["000000000004", "000000000005", "000000000009"]
    found = await store.latest("job")
    assert found is not None and found.id == 5


async def test_a_checkpointed_job_resumes_from_the_bucket(s3: S3Server, bucket: str,
                                                          tmp_path: Path) -> None:
    """A job checkpointing into the bucket, stopped without a drain, resumes there: keyed
    counts exact, only lines after the checkpoint read again."""
    path = tmp_path / "events.log"
    path.write_text("".join(f"k{i % 2}\n" for i in range(40)))

    async def run(resume: bool, last: dict[str, int], seen: list[str]) -> er.Job:
        def keep(kv: tuple[str, int]) -> None:
            last[kv[0]] = kv[1]
            seen.append(kv[0])

        return await (bus.from_source(FileSource(path=str(path), follow=True,
                                                 poll_interval=0.01))
                      .map(lambda k: (k, 1)).key_by(lambda kv: kv[0])
                      .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(keep)
                      .run("counts", checkpoint_interval=0.05,
                           checkpoint_store=store_in(s3, bucket), resume=resume))

    async with er.connect("memory") as bus:
        last: dict[str, int] = {}
        job = await run(False, last, [])
        await until(lambda: sum(last.values()) == 40)
        await next_checkpoint(job)
        await job.stop(drain=False)

    assert any(name.endswith("MANIFEST.json") for name in s3.objects(bucket, "checkpoints/"))
    with path.open("a") as file:
        file.write("k1\n" * 5)
    async with er.connect("memory") as bus:
        last, seen = {}, []
        job = await run(True, last, seen)
        await until(lambda: last.get("k1") == 25)
        await job.stop(drain=True)
    assert last == {"k1": 25}  # k0 saw no new line in this run
    assert seen == ["k1"] * 5  # resumed after the checkpoint, not from the start


@pytest.mark.parametrize(("args", "fields", "field"), [
    (("s3://Bad_Bucket/x",), {}, "bucket"),
    (("http://bucket/x",), {}, "url"),
    ((), {"bucket": "ok-bucket", "endpoint_url": "localhost"}, "endpoint_url"),
    ((), {"bucket": "ok-bucket", "secret_access_key": "s"}, "secret_access_key"),
    ((), {"bucket": "ok-bucket", "prefix": "a/../b"}, "prefix"),
])
def test_bad_settings_name_the_field(args: tuple[str, ...], fields: dict[str, str],
                                     field: str) -> None:
    with pytest.raises(er.ConfigError) as caught:
        ObjectStorageStore(*args, **fields)
    assert caught.value.field == field
