"""Bandwidth-style message callbacks (a JSON array of ``{"type", "time", "description",
"to", "message": {...}}``) to event values.

``message-received`` is an inbound message: ``{"id", "from", "to", "text", "time"}`` (plus
``"media"`` when it carries MMS media). The delivery reports of outbound messages
(``message-sending``, ``message-delivered``, ``message-failed``) become
``{"type", "id", "from", "to", "time", "description", "error_code"}`` values when asked for,
and are skipped otherwise, as are callback types this module does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventray.spi import now_ms

RECEIVED = "message-received"
REPORTS = frozenset({"message-sending", "message-delivered", "message-failed"})


class BadCallback(ValueError):
    """A callback body that is not what a Bandwidth-style gateway sends."""


@dataclass
class Parsed:
    """The values of one callback body (each with its event time in ms), and how many
    callbacks of each type were skipped."""

    values: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def _text(item: dict[str, Any], name: str, where: str, *, default: str | None = None) -> str:
    value = item.get(name, default)
    if not isinstance(value, str):
        raise BadCallback(f"{where}: '{name}' must be a string")
    return value


def _time_ms(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return now_ms()


def _received(item: dict[str, Any], message: dict[str, Any], where: str) -> dict[str, Any]:
    recipients = message.get("to")
    to = item.get("to")
    if not isinstance(to, str):  # the number it came to; a group message lists several
        if not (isinstance(recipients, list) and recipients and isinstance(recipients[0], str)):
            raise BadCallback(f"{where}: 'to' must be the number the message came to")
        to = recipients[0]
    value: dict[str, Any] = {
        "id": _text(message, "id", f"{where}.message"),
        "from": _text(message, "from", f"{where}.message"),
        "to": to,
        "text": _text(message, "text", f"{where}.message", default=""),
        "time": _text(message, "time", f"{where}.message",
                      default=_text(item, "time", where, default="")),
    }
    media = message.get("media")
    if media is not None:
        if not (isinstance(media, list) and all(isinstance(m, str) for m in media)):
            raise BadCallback(f"{where}.message: 'media' must be a list of URLs")
        value["media"] = media
    return value


def _report(kind: str, item: dict[str, Any], message: dict[str, Any],
            where: str) -> dict[str, Any]:
    error_code = item.get("errorCode")
    return {
        "type": kind,
        "id": _text(message, "id", f"{where}.message"),
        "from": _text(message, "from", f"{where}.message", default=""),
        "to": _text(item, "to", where, default=""),
        "time": _text(item, "time", where, default=""),
        "description": _text(item, "description", where, default=""),
        "error_code": error_code if isinstance(error_code, int) else None,
    }


def parse(body: Any, *, delivery_reports: bool) -> Parsed:
    """The event values a decoded callback body holds (a list of callbacks, or one);
    ``BadCallback`` naming the first callback that is malformed (then none count)."""
    items = body if isinstance(body, list) else [body]
    parsed = Parsed()
    for index, item in enumerate(items):
        where = f"callback {index}"
        if not isinstance(item, dict):
            raise BadCallback(f"{where}: must be an object")
        kind = _text(item, "type", where)
        message = item.get("message")
        if not isinstance(message, dict):
            raise BadCallback(f"{where}: 'message' must be an object")
        if kind == RECEIVED:
            value = _received(item, message, where)
        elif kind in REPORTS and delivery_reports:
            value = _report(kind, item, message, where)
        else:
            parsed.skipped[kind] = parsed.skipped.get(kind, 0) + 1
            continue
        parsed.values.append((value, _time_ms(value["time"])))
    return parsed
