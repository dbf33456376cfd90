"""http-sink and slack-sink against recording servers on 127.0.0.1."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_http import HttpSink, SlackSink
from eventray_http.testing import Reply, ScriptedEndpoint, SlackWebhook


async def deliver(sink: Any, values: list[Any]) -> list[er.DeadLetter]:
    """Publish ``values`` to a sink topic; the dead letters that came of it."""
    async with er.connect("memory") as bus:
        letters = Recorder()
        bus.dead_letters >> letters
        topic = bus.topic("out", sink=sink)
        for value in values:
            await topic.publish(value)
        await topic.flush()
        await bus.dead_letters.flush()
        return list(letters.values)


async def test_one_request_per_event() -> None:
    async with ScriptedEndpoint() as endpoint:
        sink = HttpSink(url=endpoint.url, headers={"X-Token": "t"}, concurrency=1)
        assert await deliver(sink, [{"a": 1}, "text", b"raw"]) == []
    bodies = [(r.body, r.headers["Content-Type"], r.headers["X-Token"])
              for r in endpoint.requests]
    assert bodies == [
        (b'{"a": 1}', "application/json", "t"),
        (b"text", "text/plain; charset=utf-8", "t"),
        (b"raw", "application/octet-stream", "t"),
    ]


async def test_one_request_per_batch() -> None:
    async with ScriptedEndpoint() as endpoint:
        assert await deliver(HttpSink(url=endpoint.url, batch=True), [1, 2, 3]) == []
    assert [r.json() for r in endpoint.requests] == [[1, 2, 3]]


async def test_5xx_and_timeouts_are_retried() -> None:
    script = [Reply(502), Reply(200, delay=2.0), Reply(201)]
    async with ScriptedEndpoint(script) as endpoint:
        sink = HttpSink(url=endpoint.url, timeout=0.5, retries=3, backoff_initial=0.01)
        assert await deliver(sink, ["x"]) == []
    assert len(endpoint.requests) == 3
    assert sink.requests.attempts == 3


async def test_4xx_goes_to_dead_letters_and_the_rest_is_delivered() -> None:
    async with ScriptedEndpoint(lambda n: Reply(422, "bad order") if n == 1 else Reply()) \
            as endpoint:
        letters = await deliver(HttpSink(url=endpoint.url, concurrency=1), ["a", "b", "c"])
    assert [(d.value, d.error) for d in letters] == [("b", "HTTP 422: bad order")]
    assert len(endpoint.requests) == 3, "a 4xx is not retried"


async def test_giving_up_after_retries_makes_dead_letters() -> None:
    async with ScriptedEndpoint([Reply(500, "down")]) as endpoint:
        sink = HttpSink(url=endpoint.url, retries=2, backoff_initial=0.01)
        letters = await deliver(sink, ["lost?"])
    assert [(d.value, d.error) for d in letters] == [
        ("lost?", "HTTP 500: down (after 2 retries)")
    ]
    assert len(endpoint.requests) == 3


async def test_retry_after_is_honoured() -> None:
    script = [Reply(503, headers={"Retry-After": "0.5"}), Reply()]
    async with ScriptedEndpoint(script) as endpoint:
        assert await deliver(HttpSink(url=endpoint.url, backoff_initial=0.01), ["x"]) == []
    first, second = endpoint.requests
    assert second.at - first.at >= 0.45


async def test_concurrency_is_bounded() -> None:
    async with ScriptedEndpoint([Reply(delay=0.1)]) as endpoint:
        assert await deliver(HttpSink(url=endpoint.url, concurrency=3), list(range(12))) == []
    times = sorted(r.at for r in endpoint.requests)
    # 3 at a time, 100 ms each: the 12 requests arrive in 4 waves of 3
    waves = [times[0]] + [b for a, b in itertools.pairwise(times) if b - a > 0.05]
    assert len(waves) == 4


async def test_slack_payload_rayvens_alias_and_rate_limits() -> None:
    async with SlackWebhook(rate_limit_first=1, retry_after=0.2) as slack:
        config = {"kind": "slack-sink", "channel": "#rayvens", "webhookUrl": slack.url}
        assert await deliver(config, ["AAPL is up", {"text": "AAPL is down"}]) == []
        assert await slack.wait_for(2) == [
            {"text": "AAPL is up", "channel": "#rayvens"},
            {"text": "AAPL is down", "channel": "#rayvens"},
        ]
        assert len(slack.requests) == 3, "the 429 was retried"


async def test_slack_refusals_become_dead_letters() -> None:
    async with SlackWebhook() as slack:
        letters = await deliver(SlackSink(webhook_url=slack.url), ["", "fine"])
    assert [(d.value, d.error) for d in letters] == [("", "HTTP 400: no_text")]
    assert [m["text"] for m in slack.messages] == ["fine"]


def test_bad_configs() -> None:
    with pytest.raises(er.ConfigError, match="slack-sink: field 'webhook_url': Field required"):
        er.connector("slack-sink", channel="#x")
    with pytest.raises(er.ConfigError, match="field 'retries'"):
        er.connector("http-sink", url="http://127.0.0.1/", retries=-1)
    with pytest.raises(er.ConfigError, match="field 'concurrency'"):
        er.connector("http-sink", url="http://127.0.0.1/", concurrency=0)
