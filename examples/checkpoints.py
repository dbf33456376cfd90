"""Checkpoints: a stream stopped for an upgrade (or killed) resumes where it was.

    python examples/checkpoints.py [memory|ray]

The first run counts orders per user in one-minute windows and is stopped with a drain, which
takes a final checkpoint: the open windows stay in it. The second run resumes from it, takes
more orders, and the windows close with the orders of both runs counted.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from typing import Any

import eventray as er


def show(result: er.WindowResult) -> None:
    print(f"{result.key} ordered {result.value} times in [{result.start // 1000}s, "
          f"{result.end // 1000}s)")


async def run_once(bus: er.Bus, store: str, orders: list[dict[str, Any]],
                   resume: bool) -> None:
    job = await (
        bus.from_topic("orders")
        .with_timestamps(lambda order: order["ts"])
        .key_by(lambda order: order["user"])
        .window(er.Tumbling(seconds=60))
        .count()
        .sink(show)
        .run("order-counts", checkpoint_interval=5.0, checkpoint_store=store, resume=resume)
    )
    for order in orders:
        await bus.topic("orders").publish(order)
    await bus.topic("orders").flush()  # every order reached the stream
    await job.stop(drain=True)  # the final checkpoint: the open windows stay in it


async def main(transport: str) -> None:
    with tempfile.TemporaryDirectory() as store:
        async with er.connect(transport) as bus:
            await run_once(bus, store, [{"user": "ann", "ts": 1_000},
                                        {"user": "bob", "ts": 2_000},
                                        {"user": "ann", "ts": 3_000}], resume=False)
            print("stopped; resuming")
            await run_once(bus, store, [{"user": "ann", "ts": 4_000},
                                        {"user": "ann", "ts": 130_000}], resume=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ray"))
