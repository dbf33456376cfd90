"""What the Kafka plugin's tests share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def orders(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """``count`` JSON records keyed by user, as (key, value) bytes."""
    return [(f"u{i % 7}".encode(), json.dumps({"id": i, "user": f"u{i % 7}"}).encode())
            for i in range(start, start + count)]


async def until(condition: Callable[[], Any], timeout: float = 15.0,  # noqa: ASYNC109
                what: str = "the condition") -> None:
    """Wait until ``condition()`` is true, checking every 20 ms."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (a condition of anything, polled)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout}s") from None
