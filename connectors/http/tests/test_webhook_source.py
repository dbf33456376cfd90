"""webhook-source against real HTTP clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_http import WebhookSource


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("memory") as connected:
        yield connected


async def post(client: aiohttp.ClientSession, url: str, body: bytes | str,
               **headers: str) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    async with client.post(url, data=data, headers=headers) as response:
        return response.status, await response.json()


async def start(bus: er.Bus, **fields: Any) -> tuple[WebhookSource, Recorder]:
    source = WebhookSource(**fields)
    received = Recorder()
    bus.topic("hooks", source=source) >> received
    await bus.topic("hooks").flush()
    await asyncio.wait_for(source.listening(), 10)  # the feed starts it with a subscriber
    return source, received


async def test_accepts_json_posts_with_202(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, received = await start(bus)
    assert await post(client, source.url, json.dumps({"order": 1})) == (202, {"accepted": 1})
    assert await received.wait_for(1) == [{"order": 1}]


async def test_json_arrays_are_batches_with_batch_true(
    bus: er.Bus, client: aiohttp.ClientSession
) -> None:
    source, received = await start(bus, batch=True, path="/bulk")
    assert source.url.endswith("/bulk")
    assert await post(client, source.url, "[1, 2, 3]") == (202, {"accepted": 3})
    assert await received.wait_for(3) == [1, 2, 3]


async def test_text_and_bytes_formats(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, received = await start(bus, value_format="text")
    await post(client, source.url, "plain words")
    assert await received.wait_for(1) == ["plain words"]


async def test_malformed_body_is_400_and_nothing_is_published(
    bus: er.Bus, client: aiohttp.ClientSession
) -> None:
    source, received = await start(bus)
    status, body = await post(client, source.url, "{not json")
    assert status == 400
    assert body["error"].startswith("body is not JSON")
    await post(client, source.url, "[]")
    assert await received.wait_for(1) == [[]], "only the good request became an event"
    assert source.refused == {400: 1}


async def test_json_nested_too_deeply_is_400_not_500(
    bus: er.Bus, client: aiohttp.ClientSession
) -> None:
    source, _ = await start(bus)
    status, body = await post(client, source.url, "[" * 50_000 + "]" * 50_000)
    assert status == 400
    assert "nested too deeply" in body["error"]
    assert source.refused == {400: 1}


async def test_oversized_body_is_413(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, received = await start(bus, max_body=100)
    status, body = await post(client, source.url, json.dumps("x" * 200))
    assert status == 413
    assert "100 bytes" in body["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b'"' + b"y" * 30 + b'"'

    async with client.post(source.url, data=chunks()) as response:
        assert response.status == 413
    assert received.values == []


async def test_bearer_auth(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, received = await start(bus, auth={"bearer": "s3cret"})
    assert (await post(client, source.url, "1"))[0] == 401
    assert (await post(client, source.url, "2", Authorization="Bearer wrong"))[0] == 401
    assert (await post(client, source.url, "3", Authorization="Bearer s3cret"))[0] == 202
    assert await received.wait_for(1) == [3]


async def test_hmac_signature_auth(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, received = await start(bus, auth={"hmac_sha256": "key", "header": "X-Hub"})
    body = b'{"event": "push"}'
    good = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert (await post(client, source.url, body, **{"X-Hub": "sha256=" + good}))[0] == 202
    assert (await post(client, source.url, body, **{"X-Hub": good}))[0] == 202
    tampered = b'{"event": "pull"}'
    assert (await post(client, source.url, tampered, **{"X-Hub": good}))[0] == 401
    assert (await post(client, source.url, body))[0] == 401
    assert await received.wait_for(2) == [{"event": "push"}, {"event": "push"}]


async def test_healthz(bus: er.Bus, client: aiohttp.ClientSession) -> None:
    source, _ = await start(bus)
    async with client.get(f"http://127.0.0.1:{source.port}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_draining_answers_503(client: aiohttp.ClientSession) -> None:
    source = WebhookSource()
    await source.start()
    waiting = asyncio.create_task(post(client, source.url, "1"))  # never read by a stream
    await asyncio.sleep(0.1)
    health_url = f"http://127.0.0.1:{source.port}/healthz"
    source.drain()
    # refused by the drain itself, long before its handover_timeout (30 s) would refuse it
    assert (await asyncio.wait_for(waiting, 10))[0] == 503, "a request never taken is refused"
    assert (await post(client, source.url, "2"))[0] == 503
    async with client.get(health_url) as response:
        assert response.status == 503
    await source.stop()


async def test_a_slow_stream_slows_responses_and_loses_nothing(
    client: aiohttp.ClientSession,
) -> None:
    async with er.connect("memory", buffer_size=4, max_batch=2) as bus:
        source = WebhookSource(max_pending=2)
        done: list[int] = []

        async def slow(value: int) -> None:
            await asyncio.sleep(0.02)
            done.append(value)

        job = await bus.from_source(source).sink(slow).run("slow-hooks", batch_size=2, linger=0)
        await asyncio.wait_for(source.listening(), 10)
        started = time.monotonic()
        statuses = await asyncio.gather(*(post(client, source.url, str(i)) for i in range(40)))
        elapsed = time.monotonic() - started
        assert {status for status, _ in statuses} == {202}
        assert elapsed >= 40 * 0.02 * 0.5, "responses waited for the stream"
        await job.stop(drain=True)
    assert sorted(done) == list(range(40))


async def test_handover_timeout_is_503_and_the_event_is_not_published_later(
    client: aiohttp.ClientSession,
) -> None:
    source = WebhookSource(handover_timeout=0.2)
    await source.start()
    status, _ = await post(client, source.url, "1")
    assert status == 503
    assert await source.read(10) == [], "a refused request never becomes an event"
    await source.stop()


def test_config_errors_name_the_field() -> None:
    with pytest.raises(er.ConfigError, match="field 'path'"):
        er.connector("webhook-source", path="no-slash")
    with pytest.raises(er.ConfigError, match="field 'auth'"):
        er.connector("webhook-source", auth={"token": "x"})
    with pytest.raises(er.ConfigError, match="field 'max_body'"):
        er.connector("webhook-source", max_body=0)


async def queued(source: WebhookSource, events: int) -> None:
    """Wait until ``events`` events wait for the stream (as ``/healthz`` reports)."""
    async with aiohttp.ClientSession() as session:
        health = f"http://127.0.0.1:{source.port}/healthz"
        for _ in range(200):
            async with session.get(health) as response:
                if (await response.json())["pending"] == events:
                    return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{events} events never queued")


async def test_limits_count_events_not_requests(client: aiohttp.ClientSession) -> None:
    source = WebhookSource(batch=True, max_pending=3)
    await source.start()
    first = asyncio.create_task(post(client, source.url, "[1, 2, 3]"))
    await queued(source, 3)
    second = asyncio.create_task(post(client, source.url, "[4, 5]"))
    await asyncio.sleep(0.2)
    assert [e.value for e in await source.read(10)] == [1, 2, 3], "max_pending=3 was full"
    await queued(source, 2)
    assert [e.value for e in await source.read(10)] == [4, 5]
    assert [await first, await second] == [(202, {"accepted": 3}), (202, {"accepted": 2})]
    third = asyncio.create_task(post(client, source.url, "[6, 7]"))
    await queued(source, 2)
    fourth = asyncio.create_task(post(client, source.url, "[8]"))
    await queued(source, 3)
    assert [e.value for e in await source.read(2)] == [6, 7], "read(2) takes 2 events"
    assert [e.value for e in await source.read(2)] == [8]
    assert [(await third)[0], (await fourth)[0]] == [202, 202]
    await source.stop()


async def test_a_request_is_handed_over_whole(client: aiohttp.ClientSession) -> None:
    source = WebhookSource(batch=True)
    await source.start()
    request = asyncio.create_task(post(client, source.url, "[1, 2, 3, 4, 5]"))
    await queued(source, 5)
    assert [e.value for e in await source.read(2)] == [1, 2, 3, 4, 5]
    assert await request == (202, {"accepted": 5})
    source.drain()
    assert await source.read(10) is None
    await source.stop()


async def test_events_taken_as_the_deadline_passes_are_accepted_not_503(
    client: aiohttp.ClientSession,
) -> None:
    source = WebhookSource(handover_timeout=0.3)
    await source.start()
    request = asyncio.create_task(post(client, source.url, '"order"'))
    await queued(source, 1)
    # The stream takes the event in the loop turn in which the handover deadline fires.
    reading = asyncio.create_task(source.read(10))
    time.sleep(0.4)  # noqa: ASYNC251 (blocks the loop past the deadline, the read ready)
    assert [e.value for e in await reading] == ["order"]
    assert await request == (202, {"accepted": 1}), "the stream took it: no retry wanted"
    await source.stop()
