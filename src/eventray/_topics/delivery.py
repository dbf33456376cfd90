"""Delivery of a topic's events to one subscriber: in order, or unordered with a bound."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from eventray._model.event import Event
from eventray._runtime.channel import BatchChannel

from .subscriber import Failures, Subscriber

log = logging.getLogger("eventray")

_ids = itertools.count(1)
OPEN_ATTEMPTS = 5


@dataclass(eq=False)
class SubscriptionSpec:
    """What a transport needs to deliver to one subscriber.

    ``ordered`` keeps publish order; otherwise up to ``max_concurrency`` events are handed
    over at once. ``on_failures`` receives the events the subscriber failed on.
    """

    subscriber: Subscriber
    name: str
    on_failures: Callable[[Failures, str], Awaitable[None]]
    ordered: bool = True
    max_concurrency: int = 1
    max_batch: int = 1000
    id: int = field(default_factory=lambda: next(_ids))


async def deliver_from(channel: BatchChannel[Event], spec: SubscriptionSpec) -> None:
    """Feed ``spec.subscriber`` from ``channel`` until the channel is closed and drained.

    A subscriber that cannot open after ``OPEN_ATTEMPTS`` tries (with backoff) has every event
    meant for it reported as failed, so its publishers never block on it.
    """
    subscriber = spec.subscriber
    error = await _open(subscriber, spec.name)
    if error is not None:
        while (batch := await channel.get(spec.max_batch)) is not None:
            try:
                await report_failures(spec, [(event, error) for event in batch])
            finally:
                channel.task_done(len(batch))
        return
    try:
        if spec.ordered or spec.max_concurrency <= 1:
            await _work(channel, spec, spec.max_batch)
        else:
            async with asyncio.TaskGroup() as workers:
                for _ in range(spec.max_concurrency):
                    workers.create_task(_work(channel, spec, 1))
    finally:
        await subscriber.close()


async def _open(subscriber: Subscriber, name: str) -> Exception | None:
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            await subscriber.open()
        except Exception as exc:
            if attempt == OPEN_ATTEMPTS:
                log.error("subscriber %s failed to open %d times: %s", name, attempt, exc)
                return exc
            await asyncio.sleep(random.uniform(0, 0.1 * 2**attempt))
        else:
            return None
    return None


async def _work(channel: BatchChannel[Event], spec: SubscriptionSpec, max_items: int) -> None:
    subscriber = spec.subscriber
    while (batch := await channel.get(max_items)) is not None:
        try:
            try:
                failures = await subscriber.deliver(batch)
            except Exception as exc:
                failures = [(event, exc) for event in batch]
            if failures:
                await report_failures(spec, failures)
        finally:
            channel.task_done(len(batch))


async def report_failures(spec: SubscriptionSpec, failures: Failures) -> None:
    """Hand failures to the spec's handler; a handler that fails itself is logged, never
    allowed to end the delivery loop (a dead loop would stall its publishers)."""
    try:
        await spec.on_failures(failures, spec.name)
    except Exception:
        log.exception("%s: reporting %d failed event(s) failed; they are dropped",
                      spec.name, len(failures))
