"""The client's side of ``er.job_params()``: parameters appended to an entrypoint."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from eventray import ConfigError


def _text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise ConfigError(f"parameter {key!r} must be a str, int, float or bool, got "
                      f"{type(value).__name__}", field="params")


def with_params(entrypoint: str, params: Mapping[str, Any] | None) -> str:
    """``entrypoint`` followed by ``-k 'key=value' ...``, each pair quoted for the shell that
    Ray runs the entrypoint in, so ``er.job_params()`` gets the values back unchanged."""
    if not params:
        return entrypoint
    pairs = []
    for key, value in params.items():
        if not isinstance(key, str) or not key or "=" in key or key.startswith("-") \
                or any(c.isspace() for c in key):
            raise ConfigError(f"a parameter name must be a non-empty string without '=', "
                              f"spaces or a leading '-', got {key!r}", field="params")
        text = _text(key, value)
        if "\0" in text:
            raise ConfigError(f"parameter {key!r} holds a NUL character", field="params")
        pairs.append(shlex.quote(f"{key}={text}"))
    return f"{entrypoint} -k {' '.join(pairs)}"
