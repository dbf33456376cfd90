"""eventray inside an aiohttp web application: request handlers publish orders, a stream
running beside the app keeps a total per user, and both stop cleanly with the app.

    python examples/embed_aiohttp.py            # on the default transport
    python examples/embed_aiohttp.py memory     # in this process only
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

import eventray as er

URL = web.AppKey("eventray_url", str)
ORDERS = web.AppKey("orders", er.Topic)
TOTALS = web.AppKey("totals", dict)


async def eventray_context(app: web.Application) -> AsyncIterator[None]:
    """Connect when the app starts, run the stream beside it, drain and close on shutdown."""
    async with er.connect(app[URL]) as bus:
        totals: dict[str, int] = {}
        orders = bus.topic("orders")
        job = await (
            bus.from_topic(orders)
            .key_by(lambda order: order["user"])
            .reduce(lambda a, b: {"user": b["user"], "amount": a["amount"] + b["amount"]})
            .sink(lambda total: totals.__setitem__(total["user"], total["amount"]))
            .run("order-totals")
        )
        app[ORDERS], app[TOTALS] = orders, totals
        yield
        await job.stop(drain=True)


async def post_order(request: web.Request) -> web.Response:
    try:
        order = await request.json()
        user, amount = str(order["user"]), int(order["amount"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "expected {user, amount}"}, status=400)
    await request.app[ORDERS].publish({"user": user, "amount": amount}, key=user)
    return web.json_response({"accepted": True}, status=202)


async def get_totals(request: web.Request) -> web.Response:
    return web.json_response(request.app[TOTALS])


def make_app(url: str | None) -> web.Application:
    app = web.Application()
    app[URL] = url or "ray"
    app.cleanup_ctx.append(eventray_context)
    app.router.add_post("/orders", post_order)
    app.router.add_get("/totals", get_totals)
    return app


async def main(url: str | None = None) -> None:
    runner = web.AppRunner(make_app(url))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    orders: list[dict[str, Any]] = [
        {"user": "ann", "amount": 5}, {"user": "bob", "amount": 7}, {"user": "ann", "amount": 3},
    ]
    try:
        async with aiohttp.ClientSession() as client:
            for order in [*orders, {"user": "cat"}]:
                async with client.post(f"{base}/orders", json=order) as response:
                    print("POST /orders", response.status)
            for _ in range(200):  # the stream catches up in milliseconds; wait at most 10 s
                async with client.get(f"{base}/totals") as response:
                    totals = await response.json()
                if totals == {"ann": 8, "bob": 7}:
                    break
                await asyncio.sleep(0.05)
            print("GET /totals", totals)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
