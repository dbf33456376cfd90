"""smtp-source against real SMTP clients (smtplib in a thread, aiosmtplib) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_smtp import SmtpSource

PLAIN = (b"From: ann@elsewhere.net\r\nTo: bob@example.org, cy@example.org\r\n"
         b"Subject: hello\r\n\r\nthe body\r\n")


async def start(bus: er.Bus, **fields: Any) -> tuple[SmtpSource, Recorder]:
    source = SmtpSource(**fields)
    received = Recorder()
    bus.topic("mail", source=source) >> received
    await bus.topic("mail").flush()
    await asyncio.wait_for(source.listening(), 10)  # the feed starts it with a subscriber
    return source, received


def send(source: SmtpSource, to: list[str], message: bytes | str = PLAIN,
         sender: str = "ann@elsewhere.net") -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail (blocking: call it through asyncio.to_thread)."""
    with smtplib.SMTP(*source.address, timeout=30) as client:
        return client.sendmail(sender, to, message)


async def test_one_event_per_recipient(bus: er.Bus) -> None:
    source, received = await start(bus)
    assert await asyncio.to_thread(send, source, ["bob@example.org", "cy@example.org"]) == {}
    events = await received.wait_for(2)
    assert [e["rcpt_to"] for e in events] == ["bob@example.org", "cy@example.org"]
    for event in events:
        assert event["mail_from"] == "ann@elsewhere.net"
        assert event["subject"] == "hello"
        assert event["text"] == "the body\n"
        assert event["headers"]["To"] == "bob@example.org, cy@example.org"
        assert event["raw"] == PLAIN
    assert source.accepted == 1


async def test_relaying_to_other_domains_is_550(bus: er.Bus) -> None:
    source, received = await start(bus, accept_domains=["Example.org"])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(send, source, ["eve@relay.com"])
    code, text = refused.value.recipients["eve@relay.com"]
    assert code == 550
    assert b"relay.com" in text
    partly = await asyncio.to_thread(send, source, ["eve@relay.com", "BOB@EXAMPLE.ORG"])
    assert partly == {"eve@relay.com": (550, partly["eve@relay.com"][1])}
    assert [e["rcpt_to"] for e in await received.wait_for(1)] == ["BOB@EXAMPLE.ORG"]
    assert source.refused == {}, "RCPT refusals are answered by the server, not counted"


async def test_a_message_over_max_message_size_is_552(bus: er.Bus) -> None:
    source, received = await start(bus, max_message_size=500)
    big = PLAIN + b"x" * 600 + b"\r\n"
    with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE given with MAIL
        await asyncio.to_thread(send, source, ["bob@example.org"], big)
    assert declared.value.smtp_code == 552

    def undeclared() -> tuple[int, bytes]:  # no SIZE: refused once the data is in
        with smtplib.SMTP(*source.address, timeout=30) as client:
            client.ehlo()
            client.mail("ann@elsewhere.net")
            client.rcpt("bob@example.org")
            return client.data(big)

    assert (await asyncio.to_thread(undeclared))[0] == 552
    await asyncio.to_thread(send, source, ["bob@example.org"])
    assert len(await received.wait_for(1)) == 1, "only the small message became an event"


async def test_mime_plain_preferred_html_converted(bus: er.Bus) -> None:
    source, received = await start(bus)
    both = EmailMessage()
    both["From"], both["To"], both["Subject"] = "a@b.net", "bob@example.org", "Grüße"
    both.set_content("plain words\n")
    both.add_alternative("<p>html <b>words</b></p>", subtype="html")
    both.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream",
                        filename="data.bin")
    html_only = EmailMessage()
    html_only["From"], html_only["To"], html_only["Subject"] = "a@b.net", "bob@example.org", "h"
    html_only.set_content("<html><head><style>p {}</style></head><body><h1>Title</h1>"
                          "<p>one &amp; two</p><ul><li>x</li><li>y</li></ul></body></html>",
                          subtype="html")
    await aiosmtplib.send(both, hostname=source.address[0], port=source.address[1])
    await aiosmtplib.send(html_only, hostname=source.address[0], port=source.address[1])
    first, second = await received.wait_for(2)
    assert first["subject"] == "Grüße"
    assert first["text"] == "plain words\n"
    assert first["headers"]["Content-Type"].startswith("multipart/mixed")
    assert second["text"] == "Title\n\none & two\n\n- x\n- y"


async def test_an_unknown_charset_is_decoded_leniently(bus: er.Bus) -> None:
    source, received = await start(bus)
    odd = (b"From: a@b.net\r\nTo: bob@example.org\r\nSubject: odd\r\n"
           b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nstill here\r\n")
    await asyncio.to_thread(send, source, ["bob@example.org"], odd)
    [event] = await received.wait_for(1)
    assert event["text"].startswith("still here")


def test_config_errors_name_the_field() -> None:
    with pytest.raises(er.ConfigError, match=r"smtp-source: field 'auth'.*STARTTLS"):
        er.connector("smtp-source", auth={"username": "u", "password": "p"})
    with pytest.raises(er.ConfigError, match="field 'tls_keyfile'"):
        er.connector("smtp-source", tls_certfile="cert.pem")
    with pytest.raises(er.ConfigError, match="field 'accept_domains'"):
        er.connector("smtp-source", accept_domains=["a@b.org"])
    with pytest.raises(er.ConfigError, match="field 'max_message_size'"):
        er.connector("smtp-source", max_message_size=0)
    with pytest.raises(er.ConfigError, match="field 'port'"):
        er.connector("smtp-source", port=70000)


async def test_malformed_messages_are_still_delivered(bus: er.Bus) -> None:
    source, received = await start(bus)
    broken = [
        b"Message-ID: <<>>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody one\r\n",
        b"To: c@[\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n"
        b"Content-Type: text/plain; charset=u\x00f-8\r\n\r\nbody two\r\n--XX--\r\n",
    ]
    for message in broken:
        await asyncio.to_thread(send, source, ["bob@example.org"], message)
    first, second = await received.wait_for(2)
    assert (first["subject"], first["text"], first["headers"]["Message-ID"]) == (
        "Grüße", "body one\n", "<<>>")
    assert second["text"] == "body two"


async def test_a_message_that_cannot_be_read_is_a_dead_letter(
    bus: er.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(raw: bytes) -> dict[str, Any]:
        raise ValueError("cannot read this")

    monkeypatch.setattr("eventray_smtp._smtp_source.parse", unreadable)
    letters = Recorder()
    bus.dead_letters >> letters
    source = SmtpSource()
    delivered: list[Any] = []
    job = await bus.from_source(source).sink(delivered.append).run("unreadable")
    await asyncio.wait_for(source.listening(), 10)
    assert await asyncio.to_thread(send, source, ["bob@example.org"]) == {}, \
        "accepted: the dead letter keeps it"
    [letter] = await letters.wait_for(1)
    assert letter.error == "ValueError: cannot read this"
    assert (letter.value["rcpt_to"], letter.value["raw"]) == ("bob@example.org", PLAIN)
    await job.stop(drain=True)
    assert delivered == []


async def test_recipient_and_connection_limits(bus: er.Bus) -> None:
    source, received = await start(bus, max_recipients=2, max_connections=1)

    def three_recipients() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(*source.address, timeout=30) as client:
            with pytest.raises(smtplib.SMTPConnectError) as turned_away:
                smtplib.SMTP(*source.address, timeout=30)
            assert turned_away.value.smtp_code == 421, "one connection at most"
            return client.sendmail("a@b.net", ["a@example.org", "b@example.org",
                                               "c@example.org"], PLAIN)

    refused = await asyncio.to_thread(three_recipients)
    assert refused["c@example.org"][0] == 452
    assert [e["rcpt_to"] for e in await received.wait_for(2)] == ["a@example.org",
                                                                   "b@example.org"]
