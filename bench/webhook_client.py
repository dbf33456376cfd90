"""The load client of the webhook benchmark, run as its own process:
``python -m bench.webhook_client URL REQUESTS CONCURRENCY``; prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, requests: int, concurrency: int) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    numbers = iter(range(requests))

    async def worker(client: aiohttp.ClientSession) -> None:
        for n in numbers:
            started = time.perf_counter()
            async with client.post(url, json={"n": n, "user": f"u{n % 100}"}) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({
        "seconds": seconds,
        "statuses": statuses,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
