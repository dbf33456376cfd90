"""``upload_logs_to="s3://bucket/prefix"``: a finished job's log as one object.

The object is ``<prefix>/<submission_id>.log``, written through the ``object-storage-sink``
kind (the eventray-files plugin), found in the registry like any connector. Writing it again
replaces it with the same content, so two clients that both follow the job to its end are
harmless.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import eventray as er

from ._errors import LogUploadError

_TARGET = re.compile(r"s3://(?P<bucket>[^/\s]+)(?P<prefix>/[^\s]*)?")


def check_target(target: str) -> str:
    """``target`` if it is an ``s3://bucket[/prefix]`` URL, else a ``ConfigError``."""
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise er.ConfigError(f"must be an s3://bucket/prefix URL, got {target!r}",
                             field="upload_logs_to")
    return target


def object_name(target: str, submission_id: str) -> str:
    """The ``s3://`` URL of the log object of ``submission_id`` under ``target``."""
    return f"{target.rstrip('/')}/{submission_id}.log"


async def upload_log(target: str, submission_id: str, text: str,
                     options: Mapping[str, Any]) -> str:
    """Write ``text`` as ``<target>/<submission_id>.log``; its URL, or ``LogUploadError``."""
    where = object_name(target, submission_id)
    fields = dict(options)
    if "endpoint_url" not in fields and "endpoint" not in fields \
            and os.environ.get("AWS_ENDPOINT_URL"):
        # given as a field, an http:// endpoint is allowed; from the environment it is not
        fields["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    try:
        sink = er.connector("object-storage-sink", url=target, **fields)
    except er.EventrayError as exc:
        raise LogUploadError(f"cannot write the log of job {submission_id!r} to {where}: "
                             f"{exc}", submission_id=submission_id) from exc
    assert isinstance(sink, er.Sink)
    try:
        await sink.start()
        try:
            await sink.write([er.Event({"key": f"{submission_id}.log", "body": text,
                                        "content_type": "text/plain; charset=utf-8"})])
            await sink.flush()
        finally:
            await sink.stop()
    except Exception as exc:
        raise LogUploadError(f"writing the log of job {submission_id!r} to {where} failed: "
                             f"{type(exc).__name__}: {exc}",
                             submission_id=submission_id) from exc
    return where
