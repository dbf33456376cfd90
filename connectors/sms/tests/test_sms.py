"""sms-source and sms-sink against the Bandwidth-style gateway simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import eventray as er
from eventray.testing import Recorder
from eventray_sms import SmsSink, SmsSource
from eventray_sms.testing import (
    SmsGatewaySimulator,
    basic_auth,
    delivery_report,
    message_received,
)

OURS = "+15550001111"
PHONE = "+15552223333"
LOGIN = ("bandwidth", "callback-secret")


@pytest.fixture
async def gateway() -> AsyncIterator[SmsGatewaySimulator]:
    async with SmsGatewaySimulator() as simulator:
        yield simulator


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("memory") as connected:
        yield connected


async def start(bus: er.Bus, topic: str = "sms", **fields: Any) -> tuple[SmsSource, Recorder]:
    source = SmsSource(**fields)
    received = Recorder()
    bus.topic(topic, source=source) >> received
    await bus.topic(topic).flush()
    await asyncio.wait_for(source.listening(), 10)
    return source, received


async def deliver(sink: Any, values: list[Any]) -> list[er.DeadLetter]:
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        topic = bus.topic("out", sink=sink)
        for value in values:
            await topic.publish(value)
        await topic.flush()
        await bus.dead_letters.flush()
        return list(letters.values)


async def test_inbound_messages_become_events(bus: er.Bus, gateway: SmsGatewaySimulator) -> None:
    source, received = await start(bus, auth={"username": LOGIN[0], "password": LOGIN[1]})
    assert await gateway.send_inbound(source.url, from_=PHONE, to=OURS, text="hi there",
                                      auth=LOGIN) == 200
    [event] = await received.wait_for(1)
    assert {k: event[k] for k in ("from", "to", "text")} == {
        "from": PHONE, "to": OURS, "text": "hi there"}
    assert event["id"].startswith("in-")
    assert event["time"].endswith("Z")
    assert source.accepted == 1


async def test_several_callbacks_in_one_body_and_reports_skipped(
    bus: er.Bus, gateway: SmsGatewaySimulator
) -> None:
    source, received = await start(bus)
    sent = {"id": "out-1", "to": [PHONE], "from": OURS, "text": "x"}
    body = [message_received(from_=PHONE, to=OURS, text="one"), delivery_report(sent),
            message_received(from_=PHONE, to=OURS, text="two", media=["https://m/1.jpg"])]
    assert await gateway.callback(source.url, body) == 200
    first, second = await received.wait_for(2)
    assert (first["text"], second["text"], second["media"]) == ("one", "two", ["https://m/1.jpg"])
    assert source.skipped == {"message-delivered": 1}
    assert await gateway.callback(source.url, [delivery_report(sent, failed=True)]) == 200
    assert source.skipped == {"message-delivered": 1, "message-failed": 1}


async def test_delivery_reports_as_events_when_asked(
    bus: er.Bus, gateway: SmsGatewaySimulator
) -> None:
    source, received = await start(bus, delivery_reports=True)
    sent = {"id": "out-7", "to": [PHONE], "from": OURS, "text": "x"}
    assert await gateway.callback(source.url, [delivery_report(sent, failed=True)]) == 200
    [report] = await received.wait_for(1)
    assert (report["type"], report["id"], report["to"], report["error_code"]) == (
        "message-failed", "out-7", PHONE, 4432)


async def test_bad_bodies_are_400_and_publish_nothing(
    bus: er.Bus, gateway: SmsGatewaySimulator
) -> None:
    source, received = await start(bus)
    good = message_received(from_=PHONE, to=OURS, text="ok")
    broken = message_received(from_=PHONE, to=OURS, text="x")
    del broken["message"]["from"]
    async with aiohttp.ClientSession() as session:
        async with session.post(source.url, data=b"{not json") as response:
            assert response.status == 400
        async with session.post(source.url, json=[good, broken]) as response:
            assert response.status == 400
            assert (await response.json())["error"] == (
                "callback 1.message: 'from' must be a string")
        async with session.post(source.url, json=[42]) as response:
            assert response.status == 400
    assert await gateway.callback(source.url, [good]) == 200
    assert [e["text"] for e in await received.wait_for(1)] == ["ok"], "nothing of the bad ones"
    assert source.refused == {400: 3}


async def test_bad_auth_is_401(bus: er.Bus, gateway: SmsGatewaySimulator) -> None:
    source, received = await start(bus, auth={"username": LOGIN[0], "password": LOGIN[1]})
    send = gateway.send_inbound
    assert await send(source.url, from_=PHONE, to=OURS, text="a") == 401
    assert await send(source.url, from_=PHONE, to=OURS, text="b", auth=("bandwidth", "x")) == 401
    bearer, _ = await start(bus, "sms-bearer", auth={"bearer": "tok"})
    async with aiohttp.ClientSession() as session:
        body = [message_received(from_=PHONE, to=OURS, text="c")]
        async with session.post(bearer.url, json=body,
                                headers={"Authorization": "Bearer tok"}) as response:
            assert response.status == 200
    assert source.refused == {401: 2}
    assert received.values == []


async def test_draining_answers_503_and_queued_callbacks_still_go_out(
    gateway: SmsGatewaySimulator,
) -> None:
    source = SmsSource()
    await source.start()
    queued = asyncio.create_task(gateway.send_inbound(source.url, from_=PHONE, to=OURS,
                                                      text="in flight"))
    for _ in range(1000):
        if source.pending:
            break
        await asyncio.sleep(0.01)
    source.drain()
    assert await gateway.send_inbound(source.url, from_=PHONE, to=OURS, text="late") == 503
    [event] = await source.read(10) or []
    assert event.value["text"] == "in flight"
    assert await queued == 200
    assert await source.read(10) is None
    await source.stop()


async def test_sms_sink_sends_through_the_gateway(gateway: SmsGatewaySimulator) -> None:
    values = [{"to": PHONE, "text": "hello"}, {"to": [PHONE, "+15554445555"], "text": "both"}]
    assert await deliver(gateway.sink_config(from_number=OURS), values) == []
    first, second = await gateway.wait_for(2)
    assert (first["to"], first["from"], first["text"]) == ([PHONE], OURS, "hello")
    assert first["applicationId"] == gateway.application_id
    assert second["to"] == [PHONE, "+15554445555"]


async def test_gateway_5xx_is_retried(gateway: SmsGatewaySimulator) -> None:
    gateway.fail_next(503, times=2)
    sink = SmsSink(gateway.sink_config(from_number=OURS, backoff_initial=0.01))
    assert await deliver(sink, [{"to": PHONE, "text": "eventually"}]) == []
    assert [m["text"] for m in gateway.sent] == ["eventually"]
    assert (gateway.requests, sink.attempts, sink.sent) == (3, 3, 1)


async def test_4xx_bad_events_and_exhausted_retries_are_dead_letters(
    gateway: SmsGatewaySimulator,
) -> None:
    gateway.fail_next(500, times=2)
    sink = SmsSink(gateway.sink_config(from_number=OURS, retries=1, backoff_initial=0.01))
    letters = await deliver(sink, [{"to": PHONE, "text": "gives up"}])
    letters += await deliver(sink, [{"to": "555", "text": "bad number"}, "not a dict",
                                    {"to": PHONE, "text": "fine"}])
    wrong = SmsSink(gateway.sink_config(from_number=OURS, password="wrong"))
    letters += await deliver(wrong, [{"to": PHONE, "text": "refused"}])
    assert [m["text"] for m in gateway.sent] == ["fine"]
    errors = [d.error for d in letters]
    assert errors[0] == "HTTP 500: simulated failure 500 (after 1 retries)"
    assert errors[1].startswith("not a message: '555' is not an E.164 phone number")
    assert errors[2].startswith("not a message: an sms-sink event is a dict")
    assert errors[3] == "HTTP 401: Authentication failed"


async def test_the_gateway_checks_what_a_raw_client_sends(gateway: SmsGatewaySimulator) -> None:
    url = f"{gateway.base_url}/users/{gateway.account_id}/messages"
    body = {"applicationId": "other", "to": ["12"], "from": OURS, "text": "x"}
    login = {"Authorization": basic_auth(gateway.username, gateway.password)}
    async with aiohttp.ClientSession(headers=login) as session, \
            session.post(url, json=body) as response:
        assert response.status == 400
        fields = [e["fieldName"] for e in (await response.json())["fieldErrors"]]
    assert fields == ["applicationId", "to"]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(er.ConfigError, match=r"sms-sink: field 'from_number'.*E\.164"):
        er.connector("sms-sink", base_url="http://127.0.0.1:1", account_id="1",
                     application_id="a", username="u", password="p", from_number="555")
    with pytest.raises(er.ConfigError, match="sms-sink: field 'account_id': Field required"):
        er.connector("sms-sink", base_url="http://127.0.0.1:1", application_id="a",
                     username="u", password="p", from_number=OURS)
    with pytest.raises(er.ConfigError, match="field 'base_url'"):
        er.connector("sms-sink", base_url="127.0.0.1", account_id="1", application_id="a",
                     username="u", password="p", from_number=OURS)
    with pytest.raises(er.ConfigError, match="sms-source: field 'auth'"):
        er.connector("sms-source", auth={"user": "x"})
    with pytest.raises(er.ConfigError, match="field 'path'"):
        er.connector("sms-source", path="callbacks")


async def test_oversized_and_deeply_nested_bodies_are_refused(bus: er.Bus) -> None:
    source, received = await start(bus, max_body=1000)
    async with aiohttp.ClientSession() as session:
        big = [message_received(from_=PHONE, to=OURS, text="x" * 2000)]
        async with session.post(source.url, json=big) as response:
            assert response.status == 413
        roomy, _ = await start(bus, "sms-roomy")
        nested = "[" * 50_000 + "]" * 50_000
        async with session.post(roomy.url, data=nested) as response:
            assert response.status == 400
    assert (source.refused, roomy.refused) == ({413: 1}, {400: 1})
    assert received.values == []


async def test_callbacks_past_max_concurrent_are_503_before_their_body_is_read(
    gateway: SmsGatewaySimulator,
) -> None:
    """Callbacks waiting for the stream hold their bodies: only so many at once."""
    source = SmsSource(max_pending=1, max_concurrent_callbacks=2, max_body=2000)
    await source.start()
    try:
        waiting = [asyncio.create_task(gateway.send_inbound(source.url, from_=PHONE, to=OURS,
                                                            text=text)) for text in "ab"]
        for _ in range(1000):
            if source.handling == 2:
                break
            await asyncio.sleep(0.01)
        assert source.handling == 2
        over_max_body = [message_received(from_=PHONE, to=OURS, text="c" * 3000)]
        assert await gateway.callback(source.url, over_max_body) == 503, "413 if it was read"
        assert source.refused == {503: 1}
        texts = []
        while len(texts) < 2:
            texts += [event.value["text"] for event in await source.read(10) or []]
        assert sorted(texts) == ["a", "b"]
        assert await asyncio.gather(*waiting) == [200, 200]
        later = asyncio.create_task(gateway.send_inbound(source.url, from_=PHONE, to=OURS,
                                                         text="d"))
        [event] = await source.read(10) or []
        assert (event.value["text"], await later) == ("d", 200)
        assert source.handling == 0
    finally:
        await source.stop()


async def test_an_authorization_header_that_is_not_utf8_is_401(bus: er.Bus) -> None:
    source, received = await start(bus, auth={"bearer": "tok"})
    body = json.dumps([message_received(from_=PHONE, to=OURS, text="x")]).encode()
    host, port = source.config.host, source.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (source.config.path.encode(), len(body), body))
        status = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    assert status.split()[1] == b"401"
    assert source.refused == {401: 1}
    async with aiohttp.ClientSession() as session, session.post(
            source.url, data=body, headers={"Authorization": "Bearer tok"}) as response:
        assert response.status == 200
    assert [e["text"] for e in await received.wait_for(1)] == ["x"]


async def test_a_deeply_nested_gateway_error_is_a_dead_letter() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, text="[" * 50_000 + "]" * 50_000,
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/users/1/messages", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sink = SmsSink(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}", account_id="1",
                       application_id="a", username="u", password="p", from_number=OURS)
        [letter] = await deliver(sink, [{"to": PHONE, "text": "hi"}])
    finally:
        await runner.cleanup()
    assert letter.error == "HTTP 400: " + "[" * 200
    assert letter.value == {"to": PHONE, "text": "hi"}
