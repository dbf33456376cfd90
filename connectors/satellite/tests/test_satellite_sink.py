"""satellite-sink against the Hive API simulator: the message shape, login expiry, retried
5xx, and dead letters for what retrying cannot fix."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

import eventray as er
from eventray.testing import Recorder
from eventray_satellite import SatelliteSink
from eventray_satellite.testing import HiveSimulator, SentMessage


def sink_for(hive: HiveSimulator, **fields: Any) -> SatelliteSink:
    return SatelliteSink(base_url=hive.url, username=hive.username, password=hive.password,
                         application_id=77, **{"backoff_initial": 0.01, **fields})


async def test_each_event_is_one_message_to_its_device() -> None:
    async with HiveSimulator() as hive:
        sink = sink_for(hive, device_type=1)
        await sink.start()
        await sink.write([er.Event({"device_id": 12, "data": b"\x00bytes"}),
                          er.Event({"device_id": 13, "data": "text"})])
        await sink.stop()
        assert [(m.device_type, m.device_id, m.application_id, m.data) for m in hive.sent] == [
            (1, 12, 77, b"\x00bytes"), (1, 13, 77, b"text")]
        assert sink.sent == [m.packet_id for m in hive.sent]


async def test_an_expired_session_logs_in_again() -> None:
    async with HiveSimulator() as hive:
        sink = sink_for(hive)
        await sink.write([er.Event({"device_id": 1, "data": "one"})])
        hive.expire_sessions()
        await sink.write([er.Event({"device_id": 1, "data": "two"})])
        await sink.stop()
        assert [m.data for m in hive.sent] == [b"one", b"two"]
        assert hive.logins == 2


async def test_server_errors_are_retried_then_dead_lettered() -> None:
    async with HiveSimulator() as hive:
        sink = sink_for(hive, retries=3)
        hive.fail_next(2, status=502)
        await sink.write([er.Event({"device_id": 1, "data": "after two 502s"})])
        assert [m.data for m in hive.sent] == [b"after two 502s"] and sink.retries == 2
        hive.fail_next(4, status=503)
        with pytest.raises(er.RejectedEvents) as rejected:
            await sink.write([er.Event({"device_id": 1, "data": "never"}),
                              er.Event({"device_id": 1, "data": "next"})])
        assert [i for i, _ in rejected.value.failures] == [0]
        assert "503" in rejected.value.failures[0][1]
        assert [m.data for m in hive.sent] == [b"after two 502s", b"next"]
        await sink.stop()


async def test_bad_values_and_client_errors_are_dead_letters_without_retries() -> None:
    async with HiveSimulator() as hive:
        sink = sink_for(hive, max_data=8)
        hive.fail_next(1, status=400)
        batch = [er.Event({"device_id": 1, "data": "refused"}), er.Event("no dict"),
                 er.Event({"device_id": -1, "data": "x"}), er.Event({"device_id": 1}),
                 er.Event({"device_id": 1, "data": "way over eight bytes"}),
                 er.Event({"device_id": 2, "data": "ok"})]
        with pytest.raises(er.RejectedEvents) as rejected:
            await sink.write(batch)
        failures = dict(rejected.value.failures)
        assert sorted(failures) == [0, 1, 2, 3, 4]
        assert "400" in failures[0] and "device_id" in failures[2] and "data" in failures[3]
        assert "max_data" in failures[4]
        assert hive.sent == [SentMessage(hive.sent[0].packet_id, 0, 2, 77, b"ok")]
        assert sink.retries == 0
        await sink.stop()


async def test_in_a_stream_rejected_events_go_to_the_dead_letter_topic() -> None:
    async with HiveSimulator() as hive, er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        config = {"kind": "satellite-sink", "base_url": hive.url, "username": hive.username,
                  "password": hive.password, "application_id": 5}
        job = await bus.from_values({"device_id": 3, "data": "up"},
                                    {"data": "no device"}).sink(config).run("uplink")
        await job.wait()
        [letter] = await letters.wait_for(1)
        assert letter.value == {"data": "no device"} and "device_id" in letter.error
        assert [m.data for m in hive.sent] == [b"up"]


async def test_a_2xx_answer_that_is_not_json_is_sent_once() -> None:
    posts: list[Any] = []

    async def login(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.set_cookie("JSESSIONID", "s")
        return response

    async def send(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="<html>accepted</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_post("/api/v1/messages", send)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        sink = SatelliteSink(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
                             username="u", password="p", application_id=1,
                             backoff_initial=0.01, backoff_max=0.01)
        await sink.write([er.Event({"device_id": 7, "data": b"launch"})])
        await sink.stop()
        assert [p["data"] for p in posts] == ["bGF1bmNo"], "accepted once, never re-sent"
        assert sink.retries == 0 and sink.sent == []
    finally:
        await runner.cleanup()
