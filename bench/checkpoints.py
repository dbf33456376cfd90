"""W6: what checkpoints cost, and how fast one stage recovers.

W1 on Ray with parallelism 2, without checkpoints (the baseline) and with a checkpoint every
second into a directory store; then with checkpoints again, killing one keyed stage actor
once a checkpoint is complete, and timing from the kill to the first output of the restored
stage: the first running sum of a key that instance owns that is not above the last one the
sink saw for it (running sums only grow, so that is the restored instance going over what it
replays; what the old instance emitted before it died still arrives after the kill).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Any

import eventray as er
from eventray.spi import Batch, split_by_key

from .harness import Options, Row
from .streams import add, double, keep, run_async, user, w1_events, w1_expected


def _owned_by(users: list[str], parts: int, index: int) -> set[str]:
    """The keys that instance ``index`` of a ``parts``-way keyed stage holds."""
    batch = Batch(users, keys=users)
    return set(split_by_key(batch, parts)[index].values)


async def _w1(events: list[dict[str, Any]], options: Options, *, checkpoints: bool,
              kill: bool = False) -> tuple[dict[str, int], float, float | None]:
    """The final sums, the seconds from run() to the end, and the recovery time."""
    final: dict[str, int] = {}
    seen: list[tuple[float, str]] = []

    def store(t: tuple[str, int]) -> None:
        if kill and t[1] <= final.get(t[0], -1):
            seen.append((time.perf_counter(), t[0]))
        final[t[0]] = t[1]

    settings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="w6-") as directory:
        if checkpoints:
            settings = {"checkpoint_interval": 1.0, "checkpoint_store": directory}
        async with er.connect(options.transport, namespace="w6") as bus:
            started = time.perf_counter()
            job = await (bus.from_collection(events).map(double).filter(keep).key_by(user)
                         .reduce(add).sink(store)
                         .run("w6", parallelism=options.parallelism, **settings))
            killed_at = None
            if kill:
                killed_at = await _kill_after_a_checkpoint(job)
            await job.wait()
            seconds = time.perf_counter() - started
    recovery = None
    if killed_at is not None:
        owned = _owned_by(sorted({e["user"] for e in events}), options.parallelism, 0)
        after = [at for at, key in seen if at > killed_at and key in owned]
        recovery = after[0] - killed_at if after else None
    return final, seconds, recovery


async def _kill_after_a_checkpoint(job: er.Job) -> float | None:
    import ray

    while not job.done:
        if max(m.get("checkpoint_completed", 0) for m in job.metrics().values()) >= 1:
            killed_at = time.perf_counter()
            ray.kill(ray.get_actor("w6.reduce.0", namespace="w6"), no_restart=False)
            return killed_at
        await asyncio.sleep(0.01)
    return None


def w6(options: Options) -> list[Row]:
    events = w1_events(options.events)
    expected = w1_expected(events)
    n, p = len(events), options.parallelism
    rows = []
    got, seconds, _ = run_async(_w1(events, options, checkpoints=False))
    rows.append(Row("W6", "eventray", options.transport, p, n, seconds, got == expected))
    got, seconds, _ = run_async(_w1(events, options, checkpoints=True))
    rows.append(Row("W6", "eventray+checkpoints", options.transport, p, n, seconds,
                    got == expected))
    got, seconds, recovery = run_async(_w1(events, options, checkpoints=True, kill=True))
    rows.append(Row("W6", "eventray+checkpoints+kill", options.transport, p, n, seconds,
                    got == expected and recovery is not None,
                    {"recovery_s": recovery if recovery is not None else -1.0}))
    return rows
