"""http-source polling real endpoints on 127.0.0.1, through outages."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

import eventray as er
from eventray.testing import Recorder
from eventray_http import HttpSource
from eventray_http.testing import Reply, ScriptedEndpoint

QUOTE = [{"symbol": "AAPL", "price": 189.5}]


async def test_rayvens_config_polls_every_period() -> None:
    async with ScriptedEndpoint([Reply(200, QUOTE)]) as endpoint, er.connect("memory") as bus:
        config = {"kind": "http-source", "url": endpoint.url, "period": 50}  # as in Rayvens
        received = Recorder()
        bus.topic("quotes", source=config) >> received
        values = await received.wait_for(3)
        assert values == [json.dumps(QUOTE)] * 3, "text by default, like Rayvens"
        times = [r.at for r in endpoint.requests[:3]]
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.04


async def test_json_format_and_request_shape() -> None:
    async with ScriptedEndpoint([Reply(200, {"n": 1})], path="/api") as endpoint:
        source = HttpSource(url=endpoint.url, value_format="json", method="POST",
                            headers={"X-Key": "k"}, period=10)
        await source.start()
        batch = await source.read(10)
        await source.stop()
        assert batch is not None
        assert [e.value for e in batch] == [{"n": 1}]
        request = endpoint.requests[0]
        assert (request.method, request.path, request.headers["X-Key"]) == ("POST", "/api", "k")


async def test_polling_goes_on_through_outages() -> None:
    script = [Reply(503), Reply(500), Reply(200, "back"), Reply(404), Reply(200, "again")]
    async with ScriptedEndpoint(script) as endpoint:
        source = HttpSource(url=endpoint.url, period=10)
        source.backoff_initial = 0.01
        values: list[Any] = []
        while len(values) < 2:
            batch = await source.read(10)
            assert batch is not None
            values += [e.value for e in batch]
        await source.stop()
    assert values == ["back", "again"]
    assert source.failures == 3
    assert source.last_error == "ConnectorError: http-source: HTTP 404 from " + endpoint.url


async def test_an_unreachable_endpoint_never_ends_the_stream() -> None:
    async with ScriptedEndpoint([Reply(200, "up")]) as endpoint:
        url = endpoint.url
    source = HttpSource(url=url, period=10, timeout=0.5)  # nothing listens there now
    source.backoff_initial = 0.01
    source.backoff_max = 0.02
    for _ in range(3):
        await source._poll_once()
    assert source.failures == 3
    await source.stop()


async def test_undecodable_bodies_become_dead_letters() -> None:
    async with ScriptedEndpoint([Reply(200, "{oops"), Reply(200, {"ok": True})]) as endpoint, \
            er.connect("memory") as bus:
        letters, received = Recorder(), Recorder()
        bus.dead_letters >> letters
        bus.topic("api", source=HttpSource(url=endpoint.url, value_format="json",
                                           period=10)) >> received
        assert await received.wait_for(1) == [{"ok": True}]
        (letter,) = await letters.wait_for(1)
        assert letter.value == b"{oops"
        assert letter.stage == "http-source"
        assert letter.error.startswith("ValueError: body is not JSON")


def test_bad_configs() -> None:
    with pytest.raises(er.ConfigError, match="field 'url'"):
        er.connector("http-source", url="ftp://example")
    with pytest.raises(er.ConfigError, match="field 'period'"):
        er.connector("http-source", url="http://127.0.0.1/", period=0)
    with pytest.raises(er.ConfigError, match="field 'value_format'"):
        er.connector("http-source", url="http://127.0.0.1/", value_format="xml")
