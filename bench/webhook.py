"""WH: the webhook-source under sustained load from a client in another process: accepted
requests/s and latency, with zero loss; against a bare aiohttp handler in the same run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

import eventray as er
from eventray_http import WebhookSource

from .harness import Options, Row
from .streams import run_async

CONCURRENCY = 32
ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 120.0  # seconds any one run may take


async def _load(url: str, requests: int) -> dict[str, Any]:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.webhook_client", url, str(requests), str(CONCURRENCY),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIME_LIMIT):
            out, _ = await client.communicate()
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
    result: dict[str, Any] = json.loads(out)
    return result


def _row(impl: str, requests: int, result: dict[str, Any], received: int) -> Row:
    accepted = result["statuses"].get("202", 0)
    return Row("WH", impl, "memory", 1, requests, result["seconds"],
               accepted == requests == received,
               {"p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]})


async def _bare(requests: int) -> Row:
    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"accepted": 1}, status=202)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        result = await _load(f"http://127.0.0.1:{runner.addresses[0][1]}/", requests)
    finally:
        await runner.cleanup()
    return _row("bare-aiohttp", requests, result, len(received))


async def _eventray(requests: int) -> Row:
    counted = 0

    def count(value: Any) -> None:
        nonlocal counted
        counted += 1

    async with er.connect("memory") as bus:
        source = WebhookSource()
        job = await bus.from_source(source).sink(count).run("webhook-bench")
        result = await _load(await source.listening(), requests)
        await job.stop(drain=True)
    return _row("eventray-webhook", requests, result, counted)


def wh(options: Options) -> list[Row]:
    return [run_async(_bare(options.events)), run_async(_eventray(options.events))]
