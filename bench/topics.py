"""T1: topic throughput, one publisher to one subscriber, against a bare asyncio.Queue."""

from __future__ import annotations

import asyncio

import eventray as er

from .harness import Options, Row, timed


async def _eventray(options: Options) -> Row:
    n = options.events
    total = 0

    def count(value: int) -> None:
        nonlocal total
        total += value

    async with er.connect(options.transport) as bus:
        topic = bus.topic("t1")
        topic >> count
        await topic.flush()
        with timed() as elapsed:
            for i in range(n):
                await topic.publish(i)
            await topic.flush()
    return Row("T1", "eventray", options.transport, 1, n, elapsed[0], total == n * (n - 1) // 2)


async def _asyncio_queue(options: Options) -> Row:
    n = options.events
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=1000)
    total = 0

    async def consume() -> None:
        nonlocal total
        while (value := await queue.get()) is not None:
            total += value

    with timed() as elapsed:
        consumer = asyncio.create_task(consume())
        for i in range(n):
            await queue.put(i)
        await queue.put(None)
        await consumer
    return Row("T1", "asyncio-queue", "-", 1, n, elapsed[0], total == n * (n - 1) // 2)


def t1(options: Options) -> list[Row]:
    return [asyncio.run(_asyncio_queue(options)), asyncio.run(_eventray(options))]
