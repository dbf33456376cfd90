"""Record bytes to values and back: ``json``, ``text``, ``bytes`` or the user's callable.

Header values are bytes in Kafka and ``str`` in an ``Event``: they are decoded as UTF-8 with
``surrogateescape`` and encoded back the same way, so any bytes survive a round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ._config import ValueFormat

Decoder = Callable[[bytes], Any]
Encoder = Callable[[Any], bytes | None]

_decoder = json.JSONDecoder()
_json_decode = _decoder.decode
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(_decoder, "scan_once")  # noqa: B009
_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _from_json(data: bytes) -> Any:
    text = data.decode("utf-8")
    try:  # the C scanner straight away: most records have no surrounding whitespace
        value, end = _scan_once(text, 0)
    except StopIteration:
        return _json_decode(text)  # whitespace first, or not JSON: raises the usual error
    if end != len(text):
        return _json_decode(text)
    return value


def _from_text(data: bytes) -> str:
    return data.decode("utf-8")


def _from_bytes(data: bytes) -> bytes:
    return data


def decoder(value_format: ValueFormat, custom: Decoder | None = None) -> Decoder:
    """A function of a record's bytes to the value; it raises when they do not decode."""
    if custom is not None:
        return custom
    return {"json": _from_json, "text": _from_text, "bytes": _from_bytes}[value_format]


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# the C encoder made once, not once per call as json.dumps does for containers (None on a
# Python without the C accelerator)
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_iterencode: Callable[[Any, int], Any] | None = _make_encoder(
    {}, _unserializable, json.encoder.encode_basestring, None, ":", ",", False, False, True,
) if _make_encoder else None


def _to_json(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value  # already serialized
    if _iterencode is not None and isinstance(value, (dict, list)):
        return "".join(_iterencode(value, 0)).encode("utf-8")
    return _json_encode(value).encode("utf-8")


def _to_text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"value_format 'text' takes str values, not {type(value).__name__}")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value_format 'bytes' takes bytes values, not {type(value).__name__}")


def encoder(value_format: ValueFormat, custom: Encoder | None = None) -> Encoder:
    """A function of a value to a record's bytes (``json`` passes ``bytes`` unchanged)."""
    if custom is not None:
        return custom
    return {"json": _to_json, "text": _to_text, "bytes": _to_bytes}[value_format]


def encode_key(key: Any) -> bytes | None:
    """A record key: ``bytes`` as they are, ``str`` as UTF-8, anything else as JSON."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    return _json_encode(key).encode("utf-8")


def decode_headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str] | None:
    """A record's headers as an ``Event``'s (the last value of a repeated name wins)."""
    if not headers:
        return None
    return {name: (value or b"").decode("utf-8", "surrogateescape") for name, value in headers}


def encode_headers(headers: dict[str, str] | None,
                   extra: dict[str, str]) -> list[tuple[str, bytes]]:
    """An event's headers, plus the sink's own, as a record's."""
    merged = {**extra, **headers} if headers else extra
    return [(name, value.encode("utf-8", "surrogateescape")) for name, value in merged.items()]
