"""smtp-source against hostile clients: HTML that is slow to parse, connection floods."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

import aiosmtplib
import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_smtp import SmtpSource, _mime, _smtp_source
from eventray_smtp._mime import HTML_PARSER_LIMIT, html_to_text

DOCUMENT = """<html><head><title>T</title><style>p {color: red}</style></head><body>
<h1>Hello &amp; welcome</h1><p>First <b>para</b> with a <a href="x?a=1&amp;b=2">link</a>.</p>
<!-- a <b>comment</b> --><ul><li>one</li><LI>two &lt;3</LI></ul>
<script type="text/javascript">var a = 1 < 2;</script><div>a<br>b</div>
<table><tr><td>c</td></tr></table><P>Upper</P> 3 < 4 and 5 > 2 &euro;</body></html>"""
DOCUMENT_TEXT = ("Hello & welcome\n\nFirst para with a link.\n\n- one\n- two <3\n\na\nb\n\n"
                 "c\n\nUpper\n3 < 4 and 5 > 2 \u20ac")


async def start(bus: er.Bus, **fields: Any) -> tuple[SmtpSource, Recorder]:
    source = SmtpSource(**fields)
    received = Recorder()
    bus.topic("mail", source=source) >> received
    await bus.topic("mail").flush()
    await asyncio.wait_for(source.listening(), 10)
    return source, received


def test_long_html_is_converted_like_short_html() -> None:
    assert len(DOCUMENT) <= HTML_PARSER_LIMIT
    assert html_to_text(DOCUMENT) == DOCUMENT_TEXT  # through HTMLParser
    long = DOCUMENT + "<!--" + " " * HTML_PARSER_LIMIT + "-->"
    assert html_to_text(long) == DOCUMENT_TEXT  # through the linear scan
    many = "".join([DOCUMENT] * (HTML_PARSER_LIMIT // len(DOCUMENT) + 1))
    assert html_to_text(many) == "\n\n".join([DOCUMENT_TEXT] * (many.count("<html>")))


@pytest.mark.parametrize("unclosed", ["<p", '<a href="', "<!--", "<script>", "<"])
def test_unclosed_markup_in_long_html_is_converted(unclosed: str) -> None:
    """HTMLParser takes minutes on a few hundred KB of these (quadratic time)."""
    text = html_to_text("<p>before</p>" + unclosed * (400_000 // len(unclosed)))
    assert text == ("before\n" + "<" * 400_000 if unclosed == "<" else "before")


async def test_a_slow_message_leaves_the_server_answering_others(
    bus: er.Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message is parsed off the event loop: while one is parsed (held here until another
    client was greeted), the server greets new clients; the message is then accepted."""
    source, received = await start(bus)
    parsing, greeted = threading.Event(), threading.Event()
    held: list[bool] = []

    def held_parse(raw: bytes) -> dict[str, Any]:
        parsing.set()
        held.append(greeted.wait(30))  # on the event loop this would wait the whole 30 s
        return _mime.parse(raw)

    monkeypatch.setattr(_smtp_source, "parse", held_parse)
    body = base64.encodebytes(b"<p" * 80_000).replace(b"\n", b"\r\n")
    hostile = (b"From: a@elsewhere.net\r\nTo: x@example.org\r\nContent-Type: text/html\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + body)
    sent = asyncio.create_task(aiosmtplib.send(
        hostile, sender="a@elsewhere.net", recipients=["x@example.org"],
        hostname=source.address[0], port=source.address[1], timeout=60))
    assert await asyncio.to_thread(parsing.wait, 30)
    reader, writer = await asyncio.open_connection(*source.address)
    try:
        assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"220 ")
        assert not sent.done(), "the message is answered after its parse"
        greeted.set()
    finally:
        writer.close()
    errors, reply = await sent
    assert errors == {}
    assert reply.startswith("OK")
    [event] = await received.wait_for(1)
    assert held == [True]
    assert event["text"] == ""  # nothing but unclosed <p tags
    assert event["raw"] == hostile


async def test_max_connections_holds_when_clients_connect_at_once(bus: er.Bus) -> None:
    source, _ = await start(bus, max_connections=5)

    async def greeting() -> tuple[bytes, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(*source.address)
        return (await asyncio.wait_for(reader.readline(), 30))[:3], writer

    connections = await asyncio.gather(*(greeting() for _ in range(30)))
    try:
        codes = sorted(code for code, _ in connections)
        assert codes == [b"220"] * 5 + [b"421"] * 25
        assert len(source._sessions) == 5
    finally:
        for _, writer in connections:
            writer.close()
