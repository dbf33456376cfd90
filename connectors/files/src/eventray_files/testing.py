"""An S3-compatible server on 127.0.0.1 for tests and examples: moto's server mode.

Needs the ``testing`` extra (``pip install "eventray-files[testing]"``, which brings
``moto[server]``)::

    with S3Server() as s3:
        s3.create_bucket("logs")
        sink = er.connector("object-storage-sink", bucket="logs", **s3.options)
        ...
        assert s3.objects("logs") == {"...": b"..."}

The server runs in a thread of this process on a free port and is stopped (its thread
joined) by ``stop()`` or leaving the ``with`` block. Its buckets live in memory and are gone
when it stops. It accepts any credentials; ``options`` gives the ones to use.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any credentials
REGION = "us-east-1"


class S3Server:
    """moto's S3 server on 127.0.0.1; ``endpoint_url`` and ``options`` say how to reach it."""

    def __init__(self, *, quiet: bool = True) -> None:
        self.quiet = quiet  # no log line per request (werkzeug's logger set to WARNING)
        self._server: Any = None
        self._endpoint: str | None = None
        self._client: Any = None

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server on a free port of 127.0.0.1 (returns once it listens)."""
        if self._server is not None:
            return
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise RuntimeError('eventray_files.testing needs moto: pip install '
                               '"eventray-files[testing]" (or "moto[server]")') from exc
        if self.quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop the server and join its thread."""
        server, self._server = self._server, None
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if server is not None:
            server.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._endpoint is None or self._server is None:
            raise RuntimeError("the S3 server is not running: start() it first")
        return self._endpoint

    @property
    def options(self) -> dict[str, str]:
        """The connection fields of ``object-storage-sink`` and ``ObjectStorageStore``
        (endpoint, credentials, region) for this server."""
        return {"endpoint_url": self.endpoint_url, "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY, "region": REGION}

    def client(self) -> Any:
        """A boto3 S3 client for this server (blocking; for tests' own checks)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION)
        return self._client

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists) and return its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object of ``bucket`` under ``prefix``, by name, with its content."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for entry in page.get("Contents", []):
                key = entry["Key"]
                found[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return found

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """Store one object (to set up a test, or to corrupt one)."""
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object."""
        self.client().delete_object(Bucket=bucket, Key=key)
