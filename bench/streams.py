"""W1 (keyed aggregation), W3 (event-time tumbling windows), W5 (end-to-end latency).

Every implementation consumes the same pre-built events and is checked against plain Python.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections import Counter
from typing import Any

import eventray as er

from .harness import Options, Row, timed

BASE_TS = 1_700_000_000_000


def run_async(main: Any) -> Any:
    """``asyncio.run(main)``'s result, without asyncio seeing it: Python 3.11's asyncio.run
    formats the repr of what the main task returns, which for a million-entry dict costs
    seconds and would be charged to whichever implementation ran."""
    box: list[Any] = []

    async def boxed() -> None:
        box.append(await main)

    asyncio.run(boxed())
    return box[0]


def w1_events(n: int) -> list[dict[str, Any]]:
    """The W1 events; frozen out of the garbage collector's sight so that every
    implementation pays the same (small) collection cost for what it allocates itself."""
    events = [{"user": f"u{i % 1000}", "amount": i % 100, "ts": BASE_TS + i} for i in range(n)]
    gc.collect()
    gc.freeze()
    return events


def w1_expected(events: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for event in events:
        amount = event["amount"] * 2
        if amount % 3 != 0:
            totals[event["user"]] = totals.get(event["user"], 0) + amount
    return totals


# the same four steps everywhere
def double(e: dict[str, Any]) -> tuple[str, int]:
    return (e["user"], e["amount"] * 2)


def keep(t: tuple[str, int]) -> bool:
    return t[1] % 3 != 0


def user(t: tuple[str, int]) -> str:
    return t[0]


def add(a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int]:
    return (a[0], a[1] + b[1])


def _python_loop(events: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, tuple[str, int]] = {}
    for event in events:
        t = double(event)
        if keep(t):
            previous = totals.get(t[0])
            totals[t[0]] = t if previous is None else add(previous, t)
    return {u: v for u, (_, v) in totals.items()}


async def _asyncio_pipeline(events: list[dict[str, Any]]) -> dict[str, int]:
    """Three stages joined by bounded asyncio.Queues, one event per put."""
    q1: asyncio.Queue[Any] = asyncio.Queue(1000)
    q2: asyncio.Queue[Any] = asyncio.Queue(1000)
    totals: dict[str, tuple[str, int]] = {}
    end = object()

    async def mapper() -> None:
        for event in events:
            await q1.put(double(event))
        await q1.put(end)

    async def filterer() -> None:
        while (t := await q1.get()) is not end:
            if keep(t):
                await q2.put(t)
        await q2.put(end)

    async def reducer() -> None:
        while (t := await q2.get()) is not end:
            previous = totals.get(user(t))
            totals[t[0]] = t if previous is None else add(previous, t)

    await asyncio.gather(mapper(), filterer(), reducer())
    return {u: v for u, (_, v) in totals.items()}


async def _eventray_w1(events: list[dict[str, Any]],
                       options: Options) -> tuple[dict[str, int], float, float]:
    """The final sums, the seconds ``run()`` took to start the stages, and the seconds from
    then until every record was through."""
    final: dict[str, int] = {}

    def store(t: tuple[str, int]) -> None:
        final[t[0]] = t[1]

    async with er.connect(options.transport) as bus:
        started = time.perf_counter()
        job = await (
            bus.from_collection(events)
            .map(double)
            .filter(keep)
            .key_by(user)
            .reduce(add)
            .sink(store)
            .run("w1", parallelism=options.parallelism)
        )
        running = time.perf_counter()
        await job.wait()
        done = time.perf_counter()
    return final, running - started, done - running


def w1(options: Options) -> list[Row]:
    events = w1_events(options.events)
    expected = w1_expected(events)
    n = len(events)
    rows = []
    with timed() as t:
        got = _python_loop(events)
    rows.append(Row("W1", "python-loop", "-", 1, n, t[0], got == expected))
    with timed() as t:
        got = run_async(_asyncio_pipeline(events))
    rows.append(Row("W1", "asyncio-pipeline", "-", 1, n, t[0], got == expected))
    got, startup, seconds = run_async(_eventray_w1(events, options))
    rows.append(Row("W1", "eventray", options.transport, options.parallelism, n, seconds,
                    got == expected, {"startup_s": startup}))
    return rows


# W3: count per user per 1-second window of ts


def w3_expected(events: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for event in events:
        ts = event["ts"]
        counts[(event["user"], ts - ts % 1000)] += 1
    return counts


async def _asyncio_w3(events: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    """Three stages: extract (user, ts); assign the window; count."""
    q1: asyncio.Queue[Any] = asyncio.Queue(1000)
    q2: asyncio.Queue[Any] = asyncio.Queue(1000)
    counts: Counter[tuple[str, int]] = Counter()
    end = object()

    async def extract() -> None:
        for event in events:
            await q1.put((event["user"], event["ts"]))
        await q1.put(end)

    async def assign() -> None:
        while (item := await q1.get()) is not end:
            await q2.put((item[0], item[1] - item[1] % 1000))
        await q2.put(end)

    async def count() -> None:
        while (item := await q2.get()) is not end:
            counts[item] += 1

    await asyncio.gather(extract(), assign(), count())
    return counts


async def _eventray_w3(events: list[dict[str, Any]],
                       options: Options) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()

    def store(result: er.WindowResult) -> None:
        counts[(result.key, result.start)] = result.value

    async with er.connect(options.transport) as bus:
        job = await (
            bus.from_collection(events)
            .with_timestamps(lambda e: e["ts"])
            .key_by(lambda e: e["user"])
            .window(er.Tumbling(seconds=1))
            .count()
            .sink(store)
            .run("w3", parallelism=options.parallelism)
        )
        await job.wait()
    return counts


def w3(options: Options) -> list[Row]:
    events = w1_events(options.events)
    n = len(events)
    rows = []
    with timed() as t:
        expected = w3_expected(events)
    rows.append(Row("W3", "python-dict", "-", 1, n, t[0], True))
    with timed() as t:
        got = run_async(_asyncio_w3(events))
    rows.append(Row("W3", "asyncio-pipeline", "-", 1, n, t[0], got == expected))
    with timed() as t:
        got = run_async(_eventray_w3(events, options))
    rows.append(Row("W3", "eventray", options.transport, options.parallelism, n, t[0],
                    got == expected))
    return rows


# W5: latency at a fixed rate through a 3-stage pipeline

RATE = 10_000
W5_LINGER = 0.002  # seconds a source waits to fill a micro-batch


async def _paced(events: list[dict[str, Any]], send: Any) -> None:
    """Publish at RATE events/s (in 1 ms ticks), stamping each with its send time."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    per_tick = RATE // 1000
    for i in range(0, len(events), per_tick):
        target = started + i / RATE
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for event in events[i:i + per_tick]:
            await send({**event, "sent": time.perf_counter()})


def _latency_row(impl: str, transport: str, parallelism: int, latencies: list[float],
                 n: int, seconds: float, expected: int) -> Row:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else 0.0
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0
    return Row("W5", impl, transport, parallelism, n, seconds, len(latencies) == expected,
               {"p50_ms": p50, "p99_ms": p99})


def _w5_double(e: dict[str, Any]) -> tuple[str, int, float]:
    return (e["user"], e["amount"] * 2, e["sent"])


def _w5_add(a: tuple[str, int, float], b: tuple[str, int, float]) -> tuple[str, int, float]:
    return (a[0], a[1] + b[1], b[2])


async def _asyncio_w5(events: list[dict[str, Any]]) -> list[float]:
    q1: asyncio.Queue[Any] = asyncio.Queue(1000)
    q2: asyncio.Queue[Any] = asyncio.Queue(1000)
    latencies: list[float] = []
    end = object()
    totals: dict[str, Any] = {}

    async def source() -> None:
        await _paced(events, lambda e: q1.put(_w5_double(e)))
        await q1.put(end)

    async def filterer() -> None:
        while (t := await q1.get()) is not end:
            if t[1] % 3 != 0:
                await q2.put(t)
        await q2.put(end)

    async def reducer() -> None:
        while (t := await q2.get()) is not end:
            previous = totals.get(t[0])
            totals[t[0]] = t if previous is None else _w5_add(previous, t)
            latencies.append(time.perf_counter() - t[2])

    await asyncio.gather(source(), filterer(), reducer())
    return latencies


async def _eventray_w5(events: list[dict[str, Any]], options: Options) -> list[float]:
    latencies: list[float] = []
    expected = sum(1 for e in events if (e["amount"] * 2) % 3 != 0)
    all_arrived = asyncio.Event()

    def measure(t: tuple[str, int, float]) -> None:
        latencies.append(time.perf_counter() - t[2])
        if len(latencies) == expected:
            all_arrived.set()

    async with er.connect(options.transport) as bus:
        source = bus.topic("w5-in")
        p = options.parallelism
        mapped = bus.from_topic(source).map(_w5_double)
        if p > 1:  # the stateless steps get instances of their own too
            mapped = mapped.set_parallelism(p)
        job = await (
            mapped.filter(lambda t: t[1] % 3 != 0)
            .key_by(lambda t: t[0])
            .reduce(_w5_add)
            .sink(measure)
            .run("w5", parallelism=p, linger=W5_LINGER)
        )
        await _paced(events, source.publish)
        await source.flush()
        await asyncio.wait_for(all_arrived.wait(), 60)
        await job.stop()
    return latencies


def w5(options: Options) -> list[Row]:
    events = w1_events(options.events)
    n = len(events)
    expected = sum(1 for e in events if (e["amount"] * 2) % 3 != 0)
    rows = []
    with timed() as t:
        latencies = run_async(_asyncio_w5(events))
    rows.append(_latency_row("asyncio-pipeline", "-", 1, latencies, n, t[0], expected))
    with timed() as t:
        latencies = run_async(_eventray_w5(events, options))
    rows.append(_latency_row("eventray", options.transport, options.parallelism,
                             latencies, n, t[0], expected))
    return rows
