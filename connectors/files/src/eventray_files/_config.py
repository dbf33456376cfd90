"""The typed configs of ``file-source``, ``file-sink`` and ``object-storage-sink``.

Everything is checked when the config is built: a path that does not exist, an unknown
encoding or value format, a bucket name S3 would refuse, an endpoint that is not an
``http(s)://host[:port]`` URL, half a pair of credentials.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from eventray import ConnectorConfig, alias_field

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP = re.compile(r"\d+\.\d+\.\d+\.\d+")


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
        newline = "\n".encode(value)
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r}") from None
    if newline != b"\n":
        raise ValueError(f"{value!r} does not write a newline as one byte b'\\n', so lines "
                         "cannot be split on it (use utf-8, latin-1, ...)")
    return value


class FileSourceConfig(ConnectorConfig):
    """``file-source``: the lines (``value_format="text"``) or whole files (``"bytes"``) of
    ``path``, a file or a directory (its files in name order; ``recursive`` for the files
    below it too; ``glob`` filters names). Without ``follow`` the source ends when every file
    was read to its end; with it the source tails the files (and, for a directory, notices new
    ones every ``poll_interval`` seconds) and a line is emitted only once its newline is
    written."""

    path: str
    recursive: bool = False
    glob: Annotated[str, Field(min_length=1)] = "*"
    value_format: Literal["text", "bytes"] = "text"
    encoding: str = "utf-8"
    follow: bool = False
    poll_interval: PositiveFloat = 0.5
    chunk_size: Annotated[int, Field(ge=4096)] = 1 << 20  # bytes read per call
    max_line_bytes: PositiveInt = 1 << 20  # a longer line is a dead letter
    max_file_bytes: PositiveInt = 64 << 20  # "bytes": a larger file is a dead letter

    @field_validator("path")
    @classmethod
    def _path(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            raise ValueError("give a file or directory path")
        if not Path(value).exists():
            raise ValueError(f"no such file or directory: {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return _encoding(value)


class FileSinkConfig(ConnectorConfig):
    """``file-sink``: appends one line per event to ``path`` (created with its parent
    directories if missing). ``"text"`` writes ``str(value)``, ``"json"`` one JSON document,
    ``"bytes"`` the value as it is (``bytes``; a newline is added when it has none)."""

    path: Annotated[str, Field(min_length=1)]
    value_format: Literal["text", "json", "bytes"] = "text"
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return _encoding(value)


class ObjectStorageConnection(ConnectorConfig):
    """Where an S3-compatible bucket is and how to sign requests to it. Credentials left out
    are taken from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``), as AWS's own tools do."""

    bucket: str
    endpoint_url: str | None = alias_field("endpoint_url", "endpoint", default=None)
    access_key_id: str | None = Field(default=None, validate_default=True)
    secret_access_key: str | None = Field(default=None, validate_default=True, repr=False)
    session_token: str | None = Field(default=None, repr=False)
    region: str = alias_field("region", "region_name", default="us-east-1")
    timeout: PositiveFloat = 30.0  # seconds per request
    retries: Annotated[int, Field(ge=0, le=20)] = 3

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value or _IP.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid bucket name (3 to 63 lowercase letters, digits, "
                "'.' and '-', starting and ending with a letter or digit)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError as exc:
            raise ValueError(f"{value!r} has a bad port: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{value!r}: give the endpoint only, without a path or query "
                             "(the bucket goes in 'bucket', the folder in 'prefix')")
        return value.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]+", value):
            raise ValueError(f"{value!r} is not a region name (like 'us-east-1')")
        return value

    @field_validator("secret_access_key")
    @classmethod
    def _pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        key_id = info.data.get("access_key_id")
        if (key_id is None) != (value is None):
            raise ValueError("give access_key_id and secret_access_key together (or neither, "
                             "to take them from the environment)")
        return value


def folder(value: str) -> str:
    """A prefix as a folder: no leading '/', one trailing '/' unless empty."""
    value = value.strip("/")
    if value and any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(f"{value!r}: no empty, '.' or '..' segments")
    return f"{value}/" if value else ""


class ObjectStorageSinkConfig(ObjectStorageConnection):
    """``object-storage-sink``: one object per batch (``batch=True``) or per event in
    ``bucket`` under ``prefix`` (a folder: ``"logs"`` and ``"logs/"`` are the same); see
    the sink's docstring for names and formats. ``url`` (``"s3://bucket/prefix"``) may
    replace ``bucket`` and ``prefix``."""

    prefix: str = ""
    batch: bool = True
    value_format: Literal["json", "text", "bytes"] = "json"
    content_type: str | None = None
    named_objects: bool = True
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8

    @model_validator(mode="before")
    @classmethod
    def _url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("url") is None:
            if isinstance(data, dict):
                data.pop("url", None)
            return data
        data = dict(data)
        url = data.pop("url")
        if not isinstance(url, str):
            raise ValueError(f"url: expected 's3://bucket/prefix', got {url!r}")
        if "bucket" in data or "prefix" in data:
            raise ValueError("url: give url or bucket and prefix, not both")
        bucket, prefix = parse_s3_url(url)
        data.update(bucket=bucket, prefix=prefix)
        return data

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        return folder(value)

    @field_validator("value_format")
    @classmethod
    def _format(cls, value: str, info: ValidationInfo) -> str:
        if value == "bytes" and info.data.get("batch", True):
            raise ValueError("'bytes' writes one object per event: set batch=False too")
        return value


def parse_s3_url(url: str) -> tuple[str, str]:
    """``"s3://bucket/some/prefix"`` as ``("bucket", "some/prefix")``; ValueError if it is
    not such a URL."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return parts.netloc, parts.path.lstrip("/")
