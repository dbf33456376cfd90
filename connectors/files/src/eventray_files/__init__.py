"""Files and object storage for eventray: ``file-source``, ``file-sink``,
``object-storage-sink`` and ``ObjectStorageStore`` (checkpoints in a bucket); an S3 test
server in ``eventray_files.testing``."""

from ._checkpoint_store import ObjectStorageStore
from ._config import (
    FileSinkConfig,
    FileSourceConfig,
    ObjectStorageConnection,
    ObjectStorageSinkConfig,
    parse_s3_url,
)
from ._file_sink import FileSink
from ._file_source import FileSource
from ._object_sink import ObjectStorageSink, named_object

__all__ = [
    "FileSink",
    "FileSinkConfig",
    "FileSource",
    "FileSourceConfig",
    "ObjectStorageConnection",
    "ObjectStorageSink",
    "ObjectStorageSinkConfig",
    "ObjectStorageStore",
    "named_object",
    "parse_s3_url",
]
