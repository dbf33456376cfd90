"""Importing Ray for the compatibility layers, with an error that says how to get it."""

from __future__ import annotations

from typing import Any

try:
    import ray as _ray
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "eventray.compat needs Ray and eventray's Ray transport: pip install eventray[ray]"
    ) from exc

ray: Any = _ray
