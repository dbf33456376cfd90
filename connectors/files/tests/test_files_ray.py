"""On Ray: a file read by the driver, written by a stage actor to object storage, with the
job's checkpoints in the bucket."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import eventray as er
from eventray_files import ObjectStorageStore
from eventray_files.testing import S3Server

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


async def test_file_to_object_storage_on_ray(s3: S3Server, bucket: str,
                                             tmp_path: Path) -> None:
    path = tmp_path / "orders.log"
    path.write_text("".join(f"{i}\n" for i in range(50)))
    store = ObjectStorageStore(f"s3://{bucket}/checkpoints", **s3.options)
    async with er.connect("ray", namespace=f"files-test-{uuid.uuid4().hex[:8]}") as bus:
        job = await (
            bus.from_source({"kind": "file-source", "path": str(path)})
            .map(lambda line: {"id": int(line)})
            .sink({"kind": "object-storage-sink", "bucket": bucket, "prefix": "out",
                   **s3.options})
            .run("files-on-ray", checkpoint_store=store)
        )
        await job.wait()
    objects = s3.objects(bucket, "out/")
    ids = [json.loads(line)["id"] for name in sorted(objects)
           for line in objects[name].splitlines()]
    assert ids == list(range(50))
    final = await store.latest("files-on-ray")  # the bounded job's end, in the bucket
    assert final is not None and final.parts
