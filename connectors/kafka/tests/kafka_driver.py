"""A program the tests run in processes of their own: a stream from ``IN`` (as a member of
``GROUP``) to ``OUT``, each record tagged with ``NAME``, until SIGTERM (then it drains, which
commits) or SIGKILL (which commits nothing).

    python kafka_driver.py SERVERS IN OUT GROUP NAME SESSION_TIMEOUT_MS

It prints ``owns N`` whenever the number of partitions it owns changes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import eventray as er
from eventray_kafka import KafkaSink, KafkaSource


async def main(servers: str, topic: str, out: str, group: str, name: str,
               session: int) -> None:
    source = KafkaSource(bootstrap_servers=servers, topic=topic, group_id=group,
                         from_beginning=True, session_timeout_ms=session,
                         heartbeat_interval_ms=session // 6)
    sink = KafkaSink(bootstrap_servers=servers, topic=out, headers={"worker": name})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def slowly(value: Any) -> Any:
        await asyncio.sleep(0.002)
        return value

    async with er.connect("memory") as bus:
        job = await bus.from_source(source).map(slowly).sink(sink).run(batch_size=50)
        owned = -1
        while not stop.is_set():
            if len(source.assignment) != owned:
                owned = len(source.assignment)
                print("owns", owned, flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except TimeoutError:
                pass
        await job.stop(drain=True)
    print("drained", flush=True)


if __name__ == "__main__":
    servers, topic, out, group, name, session = sys.argv[1:7]
    asyncio.run(main(servers, topic, out, group, name, int(session)))
