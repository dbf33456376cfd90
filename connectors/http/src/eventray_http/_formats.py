"""Bodies to values and back: ``text``, ``json`` or ``bytes``."""

from __future__ import annotations

import json
from typing import Any, Literal

ValueFormat = Literal["text", "json", "bytes"]


def decode(body: bytes, value_format: ValueFormat) -> Any:
    """The value a body holds; ``ValueError`` when it does not decode."""
    if value_format == "bytes":
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8: {exc}") from None
    if value_format == "text":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("body is not JSON this server accepts: nested too deeply") from None


def encode(value: Any) -> tuple[bytes, str]:
    """A request body for ``value`` and its content type: bytes and text as they are,
    anything else as JSON."""
    if isinstance(value, bytes):
        return value, "application/octet-stream"
    if isinstance(value, str):
        return value.encode(), "text/plain; charset=utf-8"
    return json.dumps(value, default=str).encode(), "application/json"
