"""W4: delivery to a Ray actor through a topic, per event (``ingest``) and per batch
(``ingest_batch``), against raw Ray calls, one per event and one per 1,000-event batch."""

from __future__ import annotations

import time
from typing import Any

import ray

import eventray as er

from .harness import Options, Row
from .streams import run_async, w1_events

PER_EVENT_CAP = 5_000  # one call per event runs at a few thousand/s: keep those runs short


@ray.remote
class Counting:
    def __init__(self) -> None:
        self.count = 0

    def ingest(self, event: Any) -> None:
        self.count += 1

    def total(self) -> int:
        return self.count


@ray.remote
class BatchCounting:
    def __init__(self) -> None:
        self.count = 0

    def ingest_batch(self, events: list[Any]) -> None:
        self.count += len(events)

    def total(self) -> int:
        return self.count


def _raw_per_event(events: list[dict[str, Any]]) -> Row:
    actor = Counting.remote()  # type: ignore[attr-defined]
    ray.get(actor.total.remote())
    started = time.perf_counter()
    ray.get([actor.ingest.remote(event) for event in events])
    seconds = time.perf_counter() - started
    ok = ray.get(actor.total.remote()) == len(events)
    ray.kill(actor)
    return Row("W4", "raw-ray-per-event", "ray", 1, len(events), seconds, ok)


def _raw_per_batch(events: list[dict[str, Any]]) -> Row:
    actor = BatchCounting.remote()  # type: ignore[attr-defined]
    ray.get(actor.total.remote())
    started = time.perf_counter()
    ray.get([actor.ingest_batch.remote(events[i : i + 1000])
             for i in range(0, len(events), 1000)])
    seconds = time.perf_counter() - started
    ok = ray.get(actor.total.remote()) == len(events)
    ray.kill(actor)
    return Row("W4", "raw-ray-per-batch", "ray", 1, len(events), seconds, ok)


async def _through_topic(events: list[dict[str, Any]], actor_class: Any, impl: str) -> Row:
    actor = actor_class.remote()
    await actor.total.remote()
    async with er.connect("ray") as bus:
        topic = bus.topic(f"w4-{impl}")
        topic >> actor
        await topic.flush()
        started = time.perf_counter()
        for event in events:
            await topic.publish(event)
        await topic.flush()
        seconds = time.perf_counter() - started
        ok = await actor.total.remote() == len(events)
    ray.kill(actor)
    return Row("W4", impl, "ray", 1, len(events), seconds, ok)


def w4(options: Options) -> list[Row]:
    events = w1_events(options.events)
    few = events[:PER_EVENT_CAP]
    return [
        _raw_per_event(few),
        _raw_per_batch(events),
        run_async(_through_topic(few, Counting, "eventray-ingest")),
        run_async(_through_topic(events, BatchCounting, "eventray-ingest_batch")),
    ]

