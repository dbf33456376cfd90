"""Ray actors and tasks as topic subscribers (Rayvens' actor.py and task.py, together).

    python examples/actors.py
"""

import asyncio

import ray

import eventray as er


@ray.remote
class Counter:
    """Takes events one at a time, in order."""

    def __init__(self) -> None:
        self.count = 0

    def ingest(self, event: int) -> None:
        self.count += 1

    def total(self) -> int:
        return self.count


@ray.remote
class BatchCounter:
    """Takes events a batch at a time: the fast path."""

    def __init__(self) -> None:
        self.count = 0

    def ingest_batch(self, events: list[int]) -> None:
        self.count += len(events)

    def total(self) -> int:
        return self.count


@ray.remote
def square(event: int) -> int:
    return event * event


async def main() -> None:
    async with er.connect() as bus:
        counter, batch_counter = Counter.remote(), BatchCounter.remote()
        topic = bus.topic("numbers")
        topic >> counter                                    # ingest(event), in order
        topic >> batch_counter                              # ingest_batch(events)
        topic.subscribe(square, ordered=False, max_concurrency=8)  # a task per event
        for i in range(1000):
            await topic.publish(i)
        await topic.flush()
        print("Counter saw", await counter.total.remote())
        print("BatchCounter saw", await batch_counter.total.remote())


if __name__ == "__main__":
    asyncio.run(main())
