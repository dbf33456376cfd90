"""satellite-source against the Hive API simulator: packets as events, paging, login expiry,
a failing or absent gateway, duplicates, and acknowledgements only once a packet is safe."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

import pytest
from aiohttp import web
from satellite_helpers import ids, read_values, source_for, until

import eventray as er
from eventray_satellite import SatelliteSource
from eventray_satellite.testing import HiveSimulator


async def test_packets_become_events_across_pages_and_nothing_is_acked_before_commit() -> None:
    async with HiveSimulator() as hive:
        sent = [hive.inject(7, f"hello {n}".encode()) for n in range(5)]
        source = source_for(hive, page_size=2)
        batch = await source.read(100)
        assert batch is not None
        assert [e.value["packet_id"] for e in batch] == sent, "one poll pages through all 5"
        first = batch[0]
        assert first.value["device_id"] == 7 and first.value["data"] == b"hello 0"
        assert first.key == 7
        received = datetime.fromisoformat(first.value["received_at"].replace("Z", "+00:00"))
        assert first.ts == int(received.timestamp() * 1000)
        assert hive.acked == [], "read acknowledges nothing"
        state = source.snapshot()
        assert state == {"unacked": sent}
        await source.commit(state)
        assert hive.acked == sent and source.unacked == []
        await source.stop()


async def test_a_packet_handed_out_again_is_not_delivered_again() -> None:
    async with HiveSimulator() as hive:
        packet = hive.inject(1, b"once")
        source = source_for(hive)
        assert ids(await read_values(source, 1)) == [packet]
        later = hive.inject(1, b"later")
        assert ids(await read_values(source, 1)) == [later]
        assert hive.handed_out[packet] == 2, "not acked yet, so the gateway gave it again"
        assert source.duplicates >= 1
        await source.stop()


async def test_filters_by_device() -> None:
    async with HiveSimulator() as hive:
        hive.inject(1, b"not mine")
        mine = hive.inject(2, b"mine")
        source = source_for(hive, device_id=2)
        assert ids(await read_values(source, 1)) == [mine]
        await source.stop()


async def test_an_expired_session_logs_in_again() -> None:
    async with HiveSimulator() as hive:
        first = hive.inject(3, b"a")
        source = source_for(hive)
        assert ids(await read_values(source, 1)) == [first]
        hive.expire_sessions()
        second = hive.inject(3, b"b")
        assert ids(await read_values(source, 1)) == [second]
        assert (source.logins, hive.logins) == (2, 2)
        assert source.failures == 0, "a 401 is answered by logging in, not by failing"
        hive.expire_sessions()
        await source.commit(source.snapshot())
        assert hive.acked == [first, second]
        await source.stop()


async def test_gateway_errors_back_off_and_never_end_the_source() -> None:
    async with HiveSimulator() as hive:
        packet = hive.inject(4, b"through the storm")
        hive.fail_next(3, status=503)
        source = source_for(hive)
        assert ids(await read_values(source, 1)) == [packet]
        assert source.failures == 3
        assert "503" in (source.last_error or "")
        await source.stop()


async def test_a_gateway_that_is_down_is_retried_until_it_is_back() -> None:
    hive = HiveSimulator()
    await hive.start()
    packet = hive.inject(5, b"queued while down")
    await hive.stop()  # connection refused
    source = source_for(hive)
    reading = asyncio.create_task(read_values(source, 1))
    await until(lambda: source.failures >= 2, what="two failed polls")
    assert not reading.done()
    await hive.start()  # the same port
    try:
        assert ids(await asyncio.wait_for(reading, 20)) == [packet]
    finally:
        await source.stop()
        await hive.stop()


async def test_a_crash_before_the_checkpoint_gives_the_packet_again_once() -> None:
    async with HiveSimulator() as hive:
        packet = hive.inject(6, b"in flight")
        crashed = source_for(hive)
        assert ids(await read_values(crashed, 1)) == [packet]
        await crashed.stop()  # dies before any checkpoint: acknowledges nothing
        assert hive.acked == []
        again = source_for(hive)
        assert ids(await read_values(again, 1)) == [packet]
        await again.commit(again.snapshot())
        assert hive.acked == [packet]
        await again.stop()


async def test_a_crash_between_checkpoint_and_ack_delivers_the_packet_once() -> None:
    async with HiveSimulator() as hive:
        packet = hive.inject(6, b"checkpointed")
        crashed = source_for(hive)
        assert ids(await read_values(crashed, 1)) == [packet]
        durable = crashed.snapshot()  # the checkpoint holding it is written...
        await crashed.stop()  # ...and the process dies before commit acknowledges it
        assert hive.acked == []
        resumed = source_for(hive)
        resumed.restore(durable)
        later = hive.inject(6, b"after the restart")
        assert ids(await read_values(resumed, 1)) == [later], "the packet is not delivered again"
        assert hive.handed_out[packet] >= 1 and hive.acked[0] == packet
        await resumed.stop()


async def test_without_checkpoints_a_drained_source_acks_on_stop_and_a_killed_one_does_not(
) -> None:
    async with HiveSimulator() as hive:
        packet = hive.inject(8, b"drained")
        source = source_for(hive)
        assert ids(await read_values(source, 1)) == [packet]
        killed = source_for(hive)
        await read_values(killed, 1)
        await killed.stop()
        assert hive.acked == [], "stopped without a drain"
        source.stop_reading()
        assert await source.read(100) is None
        await source.stop()
        assert hive.acked == [packet]


async def test_data_that_is_not_base64_is_a_dead_letter_and_acked_once_safe() -> None:
    async with HiveSimulator() as hive:
        bad = hive.inject_raw(9, "%%% not base64 %%%")
        good = hive.inject(9, b"fine")
        source = source_for(hive)
        batch = await source.read(100)
        assert batch is not None and len(batch) == 2
        letter = batch[0].value
        assert isinstance(letter, er.DeadLetter) and f"packet {bad}" in letter.error
        assert batch[1].value["data"] == b"fine"
        await source.commit(source.snapshot())
        assert hive.acked == [bad, good], "it would come back forever otherwise"
        await source.stop()


async def test_malformed_packets_are_dead_letters_and_the_rest_of_the_page_is_delivered(
        caplog: pytest.LogCaptureFixture) -> None:
    async with HiveSimulator() as hive:
        first = hive.inject(5, b"before")
        nan = hive.inject_malformed(5, hiveRxTime=float("nan"))
        huge = hive.inject_malformed(5, hiveRxTime=float("inf"))  # what 1e400 parses to
        not_a_time = hive.inject_malformed(5, hiveRxTime="yesterday")
        device = hive.inject_malformed(5, deviceId=[5])
        hive.inject_malformed(5, packetId="8")  # no usable id: it cannot be acknowledged
        last = hive.inject(5, b"after")
        source = source_for(hive, page_size=3)
        batch = await source.read(100)
        assert batch is not None and source.failures == 0
        assert [e.position for e in batch] == [first, nan, huge, not_a_time, device, last]
        assert batch[0].value["data"] == b"before" and batch[-1].value["data"] == b"after"
        letters = [e.value for e in batch[1:-1]]
        assert all(isinstance(letter, er.DeadLetter) for letter in letters)
        assert [letter.error for letter in letters] == [
            f"packet {nan}: hiveRxTime nan is not a time",
            f"packet {huge}: hiveRxTime inf is not a time",
            f"packet {not_a_time}: hiveRxTime 'yesterday' is not a time",
            f"packet {device}: deviceId [5] is not an integer"]
        assert source.dead_letters == 4 and source.malformed >= 1
        assert await source.read(100) == [], "polled again: nothing new"
        skipped = [r for r in caplog.records if "without an integer packetId" in r.message]
        assert len(skipped) == 1 and "'packetId': '8'" in skipped[0].message, "logged once"
        await source.commit(source.snapshot())
        assert hive.acked == [first, nan, huge, not_a_time, device, last]
        await source.stop()


async def test_a_gateway_ignoring_start_packet_id_is_not_paged_forever() -> None:
    async with HiveSimulator(ignore_start=True) as hive:
        packets = [hive.inject(6, f"p{n}".encode()) for n in range(5)]
        source = source_for(hive, page_size=2)
        assert ids(await asyncio.wait_for(source.read(100), 20) or []) == packets[:2]
        assert hive.handed_out[packets[0]] == 2, "the second page was the first again: stop"
        assert await source.read(100) == []
        assert hive.handed_out[packets[0]] == 4 and source.failures == 0
        await source.commit(source.snapshot())
        assert ids(await read_values(source, 2)) == packets[2:4], "acked: the next come"
        await source.stop()


async def test_unacked_packets_are_bounded_and_polling_resumes_after_commit() -> None:
    async with HiveSimulator() as hive:
        packets = [hive.inject(10, base64.b16encode(bytes([n]))) for n in range(5)]
        source = source_for(hive, max_unacked=2, page_size=1)
        assert ids(await read_values(source, 2)) == packets[:2]
        polls = source.polls
        reading = asyncio.create_task(read_values(source, 2))
        await until(lambda: source.polls >= polls + 2, what="two more polls")
        assert not reading.done() and hive.handed_out[packets[2]] == 0, "polling paused"
        await source.commit(source.snapshot())
        assert ids(await asyncio.wait_for(reading, 20)) == packets[2:4]
        await source.stop()


async def test_a_gateway_answering_garbage_is_retried_never_fatal() -> None:
    answers = [web.Response(text="<html>maintenance</html>"), web.json_response({"oops": 1}),
               web.json_response([{"deviceId": 1}]),
               web.json_response([{"packetId": 7, "deviceId": 1, "data": "b2s=",
                                   "hiveRxTime": "2024-05-01T10:00:00Z"}])]

    async def login(request: web.Request) -> web.Response:
        response = web.json_response({})
        response.set_cookie("JSESSIONID", "s")
        return response

    async def messages(request: web.Request) -> web.Response:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/api/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        source = SatelliteSource(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
                                 username="u", password="p", period=10)
        source.backoff_initial = source.backoff_max = 0.01
        values = await read_values(source, 1)
        assert values == [{"packet_id": 7, "device_id": 1, "data": b"ok",
                           "received_at": "2024-05-01T10:00:00Z"}]
        assert source.failures == 2, "HTML and a dict fail the poll; a packet without a " \
            "packetId is skipped"
        await source.stop()
    finally:
        await runner.cleanup()
