"""A received message's bytes to the fields of an ``smtp-source`` event.

The message is parsed with the standard library's ``email`` package (``policy.default``, which
decodes encoded words and transfer encodings). The text is the first ``text/plain`` body part,
else the first ``text/html`` part turned into text; parts with an unknown charset are decoded
leniently rather than refused, so an odd message is still delivered.

HTML up to ``HTML_PARSER_LIMIT`` characters goes through the standard library's
``HTMLParser``; a longer document is converted by a plainer scan that takes time linear in its
length (``HTMLParser`` takes quadratic time on unclosed tags, so a message of a few hundred KB
could keep a CPU busy for minutes).
"""

from __future__ import annotations

import email
import email.header
import email.policy
import html
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


HTML_PARSER_LIMIT = 16 * 1024  # longer HTML is converted by _scanned_parts (linear time)

# a comment's start, or a tag, end tag, declaration or processing instruction up to its ">"
# or to the next "<" (never further: each match ends before the next "<", so a scan is linear)
_MARKUP = re.compile(r"<!--|<(?:(/?)([a-zA-Z][^\s/<>]*)|[!?])[^<>]*>?")


def _parsed_parts(markup: str) -> list[str]:
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    return extractor.parts


def _scanned_parts(markup: str) -> list[str]:
    """What ``_TextExtractor`` collects, found by one scan of ``_MARKUP`` (time linear in
    the length): for HTML too long for ``HTMLParser``."""
    parts: list[str] = []
    position = 0
    while (found := _MARKUP.search(markup, position)) is not None:
        parts.append(html.unescape(markup[position:found.start()]))
        position = found.end()
        if found.group() == "<!--":  # a comment: skip to its end (the rest if it has none)
            comment_end = markup.find("-->", position)
            position = len(markup) if comment_end < 0 else comment_end + 3
            continue
        closing, tag = found.group(1), (found.group(2) or "").lower()
        if not tag:
            continue  # a declaration or processing instruction
        if not closing and tag in _HIDDEN:  # skip to its end tag (the rest if there is none)
            end = re.compile(rf"</{re.escape(tag)}\s*>", re.IGNORECASE).search(markup, position)
            position = len(markup) if end is None else end.end()
            continue
        if tag in _BLOCKS or (not closing and tag in _LINES):
            parts.append("\n")
        if tag == "li" and not closing:
            parts.append("- ")
    parts.append(html.unescape(markup[position:]))
    return parts


def html_to_text(markup: str) -> str:
    """The readable text of an HTML body: tags dropped, entities decoded, blocks on their
    own lines, runs of blank space collapsed (in time linear in its length past
    ``HTML_PARSER_LIMIT`` characters)."""
    convert = _parsed_parts if len(markup) <= HTML_PARSER_LIMIT else _scanned_parts
    parts = convert(markup)
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parts).split("\n"))
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
    except (LookupError, ValueError):  # an unknown charset, or a name with a NUL in it
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


def _header(name: str, value: str) -> str:
    """A header's value decoded (encoded words too); as received when it will not parse."""
    try:
        return str(email.policy.default.header_fetch_parse(name, value))
    except Exception:  # the parser has bugs on malformed headers (IndexError, ...)
        try:
            return str(email.header.make_header(email.header.decode_header(value)))
        except Exception:
            return value.replace("\r\n", "").replace("\n", "")


def _plain_text(raw: bytes) -> str:
    """The text of a message the modern parser cannot read, found the old way."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    for subtype in ("plain", "html"):
        for part in parts:
            if part.get_content_subtype() == subtype and not part.get_filename():
                text = _content(part).replace("\r\n", "\n")
                return html_to_text(text) if subtype == "html" else text
    return ""


def parse(raw: bytes) -> dict[str, Any]:
    """``subject``, ``text``, ``headers`` (the first value of each header name, decoded) and
    ``raw`` of a message as received. Malformed headers and MIME structure are read as far
    as they go rather than refused."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers: dict[str, str] = {}
    for name, value in message.raw_items():
        if name not in headers:
            headers[name] = _header(name, value)
    try:
        text = message_text(message)
    except Exception:  # the parser's bugs on malformed headers: look for the text plainly
        text = _plain_text(raw)
    subject = next((v for k, v in headers.items() if k.lower() == "subject"), "")
    return {"subject": subject, "text": text, "headers": headers, "raw": raw}
