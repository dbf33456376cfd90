"""Helpers the files plugin's tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import eventray as er

WAIT = 30.0  # generous: the machine is shared


async def until(condition: Callable[[], Any], timeout: float = WAIT) -> None:  # noqa: ASYNC109
    """Wait until ``condition()`` holds (polled; TimeoutError after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a condition of anything, polled)
            await asyncio.sleep(0.01)


def completed(job: er.Job) -> int:
    """The id of the job's last completed checkpoint (0: none yet)."""
    return max(m.get("checkpoint_completed", 0) for m in job.metrics().values())


async def next_checkpoint(job: er.Job) -> None:
    """Wait for a checkpoint that began after this call (two completions from now)."""
    start = completed(job)
    await until(lambda: completed(job) >= start + 2)
