"""smtp-sink against the recording aiosmtpd server of eventray_smtp.testing."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_smtp import SmtpSink
from eventray_smtp.testing import SmtpSinkServer

from .conftest import TlsFiles


async def deliver(sink: Any, values: list[Any], *, one_by_one: bool = False) -> list[er.DeadLetter]:
    """Publish ``values`` to a sink topic; the dead letters that came of it."""
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        topic = bus.topic("out", sink=sink)
        for value in values:
            await topic.publish(value)
            if one_by_one:
                await topic.flush()
        await topic.flush()
        await bus.dead_letters.flush()
        return list(letters.values)


def sink_for(server: SmtpSinkServer, **fields: Any) -> SmtpSink:
    return SmtpSink(host=server.host, port=server.port, mail_from="bridge@example.org",
                    backoff_initial=0.01, **fields)


async def test_one_mail_per_event() -> None:
    async with SmtpSinkServer() as server:
        message = EmailMessage()
        message["To"], message["Subject"] = "cy@example.org", "as is"
        message.set_content("an EmailMessage")
        events = [{"to": "ann@example.org", "subject": "hi", "text": "hello ann"},
                  {"to": ["bob@example.org", "dan@example.org"], "subject": "both",
                   "text": "x", "from": "dev42@example.org", "headers": {"X-Device": "42"}},
                  message]
        assert await deliver(sink_for(server, connections=1), events) == []
        first, second, third = await server.wait_for(3)
    assert (first.mail_from, first.rcpt_tos, first.subject, first.text) == (
        "bridge@example.org", ["ann@example.org"], "hi", "hello ann")
    assert first.message["From"] == "bridge@example.org"
    assert second.rcpt_tos == ["bob@example.org", "dan@example.org"]
    assert (second.message["From"], second.message["X-Device"]) == ("dev42@example.org", "42")
    assert (third.rcpt_tos, third.subject, third.message["From"]) == (
        ["cy@example.org"], "as is", "bridge@example.org")


async def test_4xx_is_retried_then_sent_once() -> None:
    async with SmtpSinkServer() as server:
        server.fail_next(451, times=1, at="DATA")
        server.fail_next(421, "closing", times=1, at="MAIL")
        sink = sink_for(server, retries=3)
        assert await deliver(sink, [{"to": "ann@example.org", "text": "once"}]) == []
        assert [m.text for m in server.messages] == ["once"]
    assert sink.attempts == 3


async def test_5xx_bad_events_and_exhausted_retries_are_dead_letters() -> None:
    async with SmtpSinkServer() as server:
        server.refuse("nobody@example.org", 550, "No such user")
        sink = sink_for(server, retries=1, connections=1)
        values: list[Any] = [
            {"to": "nobody@example.org", "text": "a"},
            42,
            {"subject": "no recipient"},
            {"to": "ann@example.org", "subject": "line\nbreak"},
            {"to": "ann@example.org", "text": "fine"},
        ]
        letters = await deliver(sink, values, one_by_one=True)
        server.fail_next(452, times=2, at="RCPT")
        letters += await deliver(sink_for(server, retries=1), [{"to": "x@example.org"}])
        assert [m.text for m in server.messages] == ["fine"]
    errors = {str(d.value): d.error for d in letters}
    assert errors["{'to': 'nobody@example.org', 'text': 'a'}"] == (
        "refused: nobody@example.org: 550 No such user")
    assert errors["42"].startswith("not a mail: an smtp-sink event is a dict")
    assert errors["{'subject': 'no recipient'}"] == "not a mail: the event has no 'to'"
    assert "linefeed" in errors["{'to': 'ann@example.org', 'subject': 'line\\nbreak'}"]
    assert errors["{'to': 'x@example.org'}"] == "452 Try again later (after 1 retries)"


async def test_some_recipients_refused_for_good_the_others_get_it() -> None:
    async with SmtpSinkServer() as server:
        server.refuse("gone@example.org", 550, "No such user")
        letters = await deliver(sink_for(server),
                                [{"to": ["ann@example.org", "gone@example.org"], "text": "x"}])
        assert [m.rcpt_tos for m in server.messages] == [["ann@example.org"]]
    assert [d.error for d in letters] == ["refused: gone@example.org: 550 No such user"]


async def test_the_connection_is_pooled_and_reused() -> None:
    async with SmtpSinkServer() as server:
        sink = sink_for(server, connections=1)
        values = [{"to": "ann@example.org", "text": str(i)} for i in range(5)]
        assert await deliver(sink, values, one_by_one=True) == []
        assert [m.text for m in server.messages] == ["0", "1", "2", "3", "4"]
        assert (server.connections, sink.connects) == (1, 1)


async def test_a_pooled_connection_the_server_dropped_is_replaced() -> None:
    async with SmtpSinkServer() as server:
        sink = sink_for(server, connections=1, retries=0)
        await sink.start()
        await sink.write([er.Event({"to": "ann@example.org", "text": "1"})])
        await server.drop_connections()  # the pooled connection is closed
        await sink.write([er.Event({"to": "ann@example.org", "text": "2"})])
        await sink.stop()
        assert [m.text for m in server.messages] == ["1", "2"]
        assert sink.connects == 2


async def test_starttls_and_login(tls: TlsFiles) -> None:
    async with SmtpSinkServer(tls_certfile=tls.certfile, tls_keyfile=tls.keyfile,
                              login=("bridge", "pw")) as server:
        sink = sink_for(server, starttls=True, tls_ca_file=tls.cafile, username="bridge",
                        password="pw")
        assert await deliver(sink, [{"to": "ann@example.org", "text": "secret"}]) == []
        assert [m.text for m in server.messages] == ["secret"]
        assert server.logins == 1
        wrong = sink_for(server, starttls=True, tls_ca_file=tls.cafile, username="bridge",
                         password="guess")
        [letter] = await deliver(wrong, [{"to": "ann@example.org", "text": "no"}])
        assert letter.error.startswith("refused: ann@example.org: 535")


def test_config_errors_name_the_field() -> None:
    with pytest.raises(er.ConfigError, match="smtp-sink: field 'mail_from': Field required"):
        er.connector("smtp-sink", host="127.0.0.1")
    with pytest.raises(er.ConfigError, match=r"field 'mail_from'.*e-mail address"):
        er.connector("smtp-sink", mail_from="bridge")
    with pytest.raises(er.ConfigError, match="field 'password'"):
        er.connector("smtp-sink", mail_from="a@b.org", username="u")
    with pytest.raises(er.ConfigError, match="field 'use_tls'"):
        er.connector("smtp-sink", mail_from="a@b.org", starttls=True, use_tls=True)
    with pytest.raises(er.ConfigError, match="field 'retries'"):
        er.connector("smtp-sink", mail_from="a@b.org", retries=-1)


async def test_a_server_that_is_not_there_is_retried_then_a_dead_letter() -> None:
    async with SmtpSinkServer() as server:
        port = server.port
    sink = SmtpSink(host="127.0.0.1", port=port, mail_from="b@example.org", retries=2,
                    backoff_initial=0.01)
    [letter] = await deliver(sink, [{"to": "ann@example.org", "text": "x"}])
    assert letter.error.startswith("SMTPConnectError")
    assert letter.error.endswith("(after 2 retries)")
    assert sink.attempts == 3


async def test_connections_bound_concurrency_and_idle_ones_are_replaced() -> None:
    async with SmtpSinkServer() as server:
        sink = sink_for(server, connections=2, idle_timeout=0.05)
        await sink.start()
        await sink.write([er.Event({"to": "ann@example.org", "text": str(i)})
                          for i in range(10)])
        assert (len(server.messages), server.connections) == (10, 2)
        await asyncio.sleep(0.1)  # both pooled connections are now idle for too long
        await sink.write([er.Event({"to": "ann@example.org", "text": "later"})])
        await sink.stop()
        assert (len(server.messages), sink.connects) == (11, 3)


async def test_a_server_that_never_answers_times_out() -> None:
    clients: list[asyncio.StreamWriter] = []

    def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    sink = SmtpSink(host="127.0.0.1", port=port, mail_from="b@example.org", timeout=0.2,
                    retries=0)
    [letter] = await deliver(sink, [{"to": "ann@example.org", "text": "x"}])
    assert letter.error.startswith("SMTPConnectTimeoutError")
    for writer in clients:
        writer.close()
    silent.close()
    await silent.wait_closed()
