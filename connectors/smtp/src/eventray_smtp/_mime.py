"""A received message's bytes to the fields of an ``smtp-source`` event.

The message is parsed with the standard library's ``email`` package (``policy.default``, which
decodes encoded words and transfer encodings). The text is the first ``text/plain`` body part,
else the first ``text/html`` part turned into text; parts with an unknown charset are decoded
leniently rather than refused, so an odd message is still delivered.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from typing import Any

_BLOCKS = frozenset({
    "address", "article", "blockquote", "div", "dl", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "ol", "p", "pre", "section", "table", "ul",
})
_LINES = frozenset({"br", "dd", "dt", "li", "tr"})  # start a line, end none
_HIDDEN = frozenset({"head", "script", "style", "template", "title"})


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document: blocks (paragraphs, headings, lists)
    on their own lines, list items as ``- item``, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS or tag in _LINES:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: tags dropped, entities decoded, blocks on their
    own lines, runs of blank space collapsed."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip()
             for line in "".join(extractor.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _content(part: Message) -> str:
    """A text part's content as ``str``, whatever its declared charset."""
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError, KeyError):
        pass  # an unknown or wrong charset: decode the bytes leniently below
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def message_text(message: EmailMessage) -> str:
    """The message's text (``\n`` line ends): ``text/plain`` preferred, ``text/html``
    converted; "" if neither."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = _content(body).replace("\r\n", "\n")
    if body.get_content_subtype() == "html":
        return html_to_text(text)
    return text


def parse(raw: bytes) -> dict[str, Any]:
    """``subject``, ``text``, ``headers`` (the first value of each header name, decoded) and
    ``raw`` of a message as received."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers: dict[str, str] = {}
    for name, value in message.items():
        headers.setdefault(name, str(value))
    return {
        "subject": str(message.get("Subject", "")),
        "text": message_text(message),
        "headers": headers,
        "raw": raw,
    }
