"""Files and object storage: the errors of a log file archived to a bucket, and the whole log.

A file-source reads `app.log` line by line, the stream keeps the errors, and an
object-storage-sink writes them to the bucket `archive` as JSON Lines objects; the job's
checkpoints go to the same bucket. Then the whole log is uploaded as one named object. The
bucket lives in moto's S3 server (`eventray_files.testing.S3Server`, on a free 127.0.0.1
port, stopped at the end).

    python examples/files_pipeline.py            # memory transport
    python examples/files_pipeline.py ray        # stages on Ray
"""

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import eventray as er
from eventray_files import ObjectStorageStore
from eventray_files.testing import S3Server

LOG = "INFO start\nERROR disk full\nINFO retry\nERROR disk still full\nINFO done\n"


async def main(url: str = "memory") -> None:
    with S3Server() as s3, tempfile.TemporaryDirectory() as folder:
        s3.create_bucket("archive")
        log = Path(folder) / "app.log"
        log.write_text(LOG)
        async with er.connect(url) as bus:
            store = ObjectStorageStore("s3://archive/checkpoints", **s3.options)
            job = await (
                bus.from_source({"kind": "file-source", "path": str(log)})
                .filter(lambda line: line.startswith("ERROR"))
                .map(lambda line: {"error": line.removeprefix("ERROR ")})
                .sink({"kind": "object-storage-sink", "url": "s3://archive/errors",
                       **s3.options})
                .run("archive-errors", checkpoint_store=store)
            )
            await job.wait()

        sink = er.connector("object-storage-sink", url="s3://archive/logs", **s3.options)
        await sink.start()
        await sink.write([er.Event({"key": "app.log", "body": log.read_text()})])
        await sink.stop()

        for name, body in sorted(s3.objects("archive", "errors/").items()):
            print(f"errors/<run>-{name[-16:]}:", [json.loads(line) for line in body.splitlines()])
        print("logs/app.log:", len(s3.objects("archive", "logs/")["logs/app.log"]), "bytes")
        checkpoint = await store.latest("archive-errors")
        print("last checkpoint:", checkpoint is not None)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
