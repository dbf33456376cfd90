"""The bounded batch channel every hop uses."""

from __future__ import annotations

import asyncio

import pytest

from eventray import ClosedError
from eventray.spi import BatchChannel


async def test_get_takes_up_to_max_items_across_batches() -> None:
    channel: BatchChannel[int] = BatchChannel(100)
    await channel.put([1, 2, 3])
    await channel.put([4, 5])
    assert await channel.get(4) == [1, 2, 3, 4]
    assert await channel.get(4) == [5]
    assert len(channel) == 0


async def test_put_waits_for_room_and_get_waits_for_items() -> None:
    channel: BatchChannel[int] = BatchChannel(2)
    await channel.put([1, 2])
    blocked = asyncio.create_task(channel.put([3]))
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(channel) == 2
    assert await channel.get(1) == [1]
    await asyncio.wait_for(blocked, 1)
    assert await channel.get(10) == [2, 3]
    waiting = asyncio.create_task(channel.get(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    channel.put_nowait([9])
    assert await asyncio.wait_for(waiting, 1) == [9]


async def test_close_drains_then_ends_and_refuses_puts() -> None:
    channel: BatchChannel[str] = BatchChannel(10)
    await channel.put(["a"])
    channel.close()
    with pytest.raises(ClosedError):
        await channel.put(["b"])
    assert await channel.get(5) == ["a"]
    assert await channel.get(5) is None


async def test_join_waits_for_task_done() -> None:
    channel: BatchChannel[int] = BatchChannel(10)
    await channel.put([1, 2, 3])
    joined = asyncio.create_task(channel.join())
    batch = await channel.get(2)
    assert batch is not None
    channel.task_done(len(batch))
    await asyncio.sleep(0.01)
    assert not joined.done()
    rest = await channel.get(5)
    assert rest is not None
    channel.task_done(len(rest))
    await asyncio.wait_for(joined, 1)


async def test_abandon_releases_joiners_and_blocked_putters() -> None:
    channel: BatchChannel[int] = BatchChannel(1)
    await channel.put([1])
    putter = asyncio.create_task(channel.put([2]))
    joiner = asyncio.create_task(channel.join())
    await asyncio.sleep(0.01)
    channel.abandon()
    await asyncio.wait_for(joiner, 1)
    with pytest.raises(ClosedError):
        await asyncio.wait_for(putter, 1)


async def test_cancelled_getter_passes_its_wake_up_on() -> None:
    channel: BatchChannel[int] = BatchChannel(10)
    first = asyncio.create_task(channel.get(1))
    second = asyncio.create_task(channel.get(1))
    await asyncio.sleep(0.01)
    channel.put_nowait([7])
    first.cancel()
    assert await asyncio.wait_for(second, 1) == [7]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BatchChannel(0)
