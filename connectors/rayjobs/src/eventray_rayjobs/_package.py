"""A local ``working_dir`` as the zip package Ray's job server stores in its GCS.

Ray names a package by its content: ``gcs://_ray_pkg_<hash>.zip``, uploaded with
``PUT /api/packages/gcs/_ray_pkg_<hash>.zip`` unless ``GET`` of that path finds it already
there. The zip holds the directory's files at its top level (Ray unpacks a ``gcs://`` zip as
is). Hashing and zipping read files, so they run in a worker thread, never on the loop.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eventray import ConfigError

PACKAGE_PREFIX = "_ray_pkg_"
# Ray's own limit is its gRPC message size (512 MiB); a package near it is a mistake.
MAX_PACKAGE_BYTES = 256 * 1024 * 1024
ALWAYS_EXCLUDED = ("__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache",
                   ".ruff_cache")


@dataclass(frozen=True)
class Package:
    """A zipped directory and its content-addressed name."""

    name: str  # _ray_pkg_<sha1>.zip
    data: bytes

    @property
    def uri(self) -> str:
        return f"gcs://{self.name}"


def _excluded(relative: str, excludes: tuple[str, ...]) -> bool:
    parts = relative.split("/")
    if any(part in ALWAYS_EXCLUDED for part in parts):
        return True
    return any(fnmatch.fnmatch(relative, pattern) or
               any(fnmatch.fnmatch(part, pattern) for part in parts)
               for pattern in excludes)


def _files(directory: Path, excludes: tuple[str, ...]) -> list[tuple[str, Path]]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            relative = path.relative_to(directory).as_posix()
            if not _excluded(relative, excludes):
                found.append((relative, path))
    return found


def build_package(directory: str | os.PathLike[str],
                  excludes: tuple[str, ...] = ()) -> Package:
    """Zip ``directory`` (blocking: call it in a thread). Files whose path or a path part
    matches one of ``excludes`` (glob patterns) are left out, as are caches and ``.git``."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{str(directory)!r} is not a directory", field="working_dir")
    digest = hashlib.sha1(usedforsecurity=False)
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, path in _files(root, excludes):
            data = path.read_bytes()
            total += len(data)
            if total > MAX_PACKAGE_BYTES:
                raise ConfigError(f"{str(directory)!r} holds more than "
                                  f"{MAX_PACKAGE_BYTES // 2**20} MiB; exclude the large "
                                  "files (runtime_env={'excludes': [...]})",
                                  field="working_dir")
            digest.update(relative.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
            info = zipfile.ZipInfo(relative, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return Package(f"{PACKAGE_PREFIX}{digest.hexdigest()}.zip", buffer.getvalue())
