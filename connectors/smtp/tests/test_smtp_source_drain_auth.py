"""smtp-source: draining with mail in flight, backpressure, AUTH over STARTTLS."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import pytest

import eventray as er
from eventray_smtp import SmtpSource

from .conftest import TlsFiles

MESSAGE = b"From: a@b.net\r\nTo: bob@example.org\r\nSubject: s\r\n\r\nbody\r\n"


async def until(condition: Callable[[], bool]) -> None:
    """Wait (up to 10 s) until ``condition()`` holds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


class RawClient:
    """An SMTP client that speaks line by line, to stop halfway through a message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: tuple[str, int]) -> tuple[RawClient, str]:
        reader, writer = await asyncio.open_connection(*address)
        client = cls(reader, writer)
        return client, await client.reply()

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 30)).decode()
            lines.append(line.rstrip())
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def start_message(self, to: str = "bob@example.org") -> None:
        for line, code in (("EHLO me", "250"), ("MAIL FROM:<a@b.net>", "250"),
                           (f"RCPT TO:<{to}>", "250"), ("DATA", "354")):
            assert (await self.command(line)).startswith(code), line

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def test_drain_refuses_new_mail_with_421_and_delivers_mail_in_flight() -> None:
    async with er.connect("memory") as bus:
        source = SmtpSource()
        delivered: list[Any] = []
        job = await bus.from_source(source).sink(delivered.append).run("mail-drain")
        address = await asyncio.wait_for(source.listening(), 10)
        in_flight, greeting = await RawClient.open(address)
        assert greeting.startswith("220")
        await in_flight.start_message()
        in_flight.writer.write(MESSAGE[:20])  # half a message, then the drain starts
        idle, _ = await RawClient.open(address)
        assert (await idle.command("EHLO me")).startswith("250")
        stopping = asyncio.create_task(job.stop(drain=True))
        await until(lambda: source.draining)
        assert (await idle.command("MAIL FROM:<a@b.net>")).startswith("421")
        late, greeting = await RawClient.open(address)
        assert greeting.startswith("421"), "a new connection is turned away"
        assert not stopping.done(), "the drain waits for the message being transmitted"
        in_flight.writer.write(MESSAGE[20:] + b".\r\n")
        assert (await in_flight.reply()).startswith("250")
        await asyncio.wait_for(stopping, 30)
        for client in (in_flight, idle, late):
            await client.close()
    assert [(v["rcpt_to"], v["subject"]) for v in delivered] == [("bob@example.org", "s")]


async def test_stop_refuses_what_the_stream_never_took() -> None:
    source = SmtpSource()
    await source.start()
    sending = asyncio.create_task(asyncio.to_thread(_sendmail, source.address))
    await until(lambda: source.pending == 1)
    await source.stop()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await sending
    assert refused.value.smtp_code == 421, "not accepted: the sender keeps it and retries"
    assert await source.read(10) is None


async def test_handover_timeout_is_451_and_the_mail_is_not_published_later() -> None:
    source = SmtpSource(handover_timeout=0.2)
    await source.start()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(_sendmail, source.address)
    assert refused.value.smtp_code == 451
    assert await source.read(10) == [], "a refused message never becomes an event"
    assert source.refused == {451: 1}
    await source.stop()


async def test_a_full_queue_makes_senders_wait_not_the_queue_grow() -> None:
    source = SmtpSource(max_pending=2)
    await source.start()
    sending = [asyncio.create_task(asyncio.to_thread(_sendmail, source.address))
               for _ in range(5)]
    await until(lambda: source.pending == 2)
    await asyncio.sleep(0.2)
    assert source.pending == 2, "the other senders wait for room"
    assert not any(task.done() for task in sending), "no 250 before the stream took it"
    taken = []
    while len(taken) < 5:
        taken += await source.read(1) or []
    assert [await task for task in sending] == [{}] * 5
    await source.stop()


def _sendmail(address: tuple[str, int], *, login: tuple[str, str] | None = None,
              cafile: str | None = None) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(*address, timeout=30) as client:
        if cafile is not None:
            client.starttls(context=ssl.create_default_context(cafile=cafile))
        if login is not None:
            client.login(*login)
        return client.sendmail("a@b.net", ["bob@example.org"], MESSAGE)


async def test_auth_over_starttls(bus: er.Bus, tls: TlsFiles) -> None:
    source = SmtpSource(auth={"username": "bridge", "password": "s3cret"},
                        tls_certfile=tls.certfile, tls_keyfile=tls.keyfile)
    received: list[Any] = []
    bus.topic("mail", source=source) >> received.append
    await bus.topic("mail").flush()
    address = await asyncio.wait_for(source.listening(), 10)
    good = ("bridge", "s3cret")
    assert await asyncio.to_thread(_sendmail, address, login=good, cafile=tls.cafile) == {}
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        await asyncio.to_thread(_sendmail, address, login=("bridge", "guess"),
                                cafile=tls.cafile)
    assert wrong.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPSenderRefused) as anonymous:
        await asyncio.to_thread(_sendmail, address, cafile=tls.cafile)
    assert anonymous.value.smtp_code == 530, "no mail without a login"
    with pytest.raises(smtplib.SMTPNotSupportedError):  # AUTH is not offered in clear text
        await asyncio.to_thread(_sendmail, address, login=good)
    await bus.topic("mail").flush()
    assert [v["rcpt_to"] for v in received] == ["bob@example.org"]


async def test_a_sender_stalled_mid_message_holds_a_drain_only_drain_timeout() -> None:
    async with er.connect("memory") as bus:
        source = SmtpSource(drain_timeout=0.3)
        job = await bus.from_source(source).sink(lambda value: None).run("stalled")
        stalled, _ = await RawClient.open(await asyncio.wait_for(source.listening(), 10))
        await stalled.start_message()
        stalled.writer.write(MESSAGE)  # and never the final "."
        await until(lambda: source.transmitting == 1)
        await asyncio.wait_for(job.stop(drain=True), 30)
        assert source.refused == {}, "it never finished its message: nothing to refuse"
        stalled.writer.write(b".\r\n")
        assert await stalled.reply() == "", "cut off without a 250: the sender retries"
        await stalled.close()


async def test_a_transaction_begun_before_the_drain_gets_421_at_data() -> None:
    source = SmtpSource()
    await source.start()
    client, _ = await RawClient.open(source.address)
    for line in ("EHLO me", "MAIL FROM:<a@b.net>", "RCPT TO:<bob@example.org>"):
        assert (await client.command(line)).startswith("250")
    source.drain()  # nothing is being transmitted: the drain ends at once
    assert await source.read(10) is None
    assert (await client.command("DATA")).startswith("421"), "refused before the data"
    assert await client.reply() == "", "and the connection is closed"
    await client.close()
    await source.stop()
