"""Rayvens' hello, on eventray: a topic, a subscriber, two events delivered in order.

    python examples/hello.py            # on the default transport
    python examples/hello.py memory     # in this process only, no Ray
"""

import asyncio
import sys

import eventray as er


async def main(url: str | None = None) -> None:
    async with er.connect(url) as bus:
        topic = bus.topic("example")
        topic >> print
        topic << "hello" << "world"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
