"""The handover queue of server-style sources: a request is answered yes only once the
stream took its events, refused otherwise, and refused events never reach the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from eventray.spi import HandoverQueue


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (they need no time, only turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def offer(queue: HandoverQueue[int], items: list[int],
          timeout: float | None = 30.0) -> asyncio.Task[bool]:
    return asyncio.create_task(queue.offer(items, timeout))


async def test_an_offer_is_answered_yes_once_take_took_its_items() -> None:
    queue: HandoverQueue[int] = HandoverQueue(100)
    first, second = offer(queue, [1, 2, 3]), offer(queue, [4, 5])
    await until(lambda: len(queue) == 5)
    assert not first.done() and not second.done()  # queued is not yet taken
    assert await queue.take(2) == [1, 2, 3]  # a request is taken whole, never in part
    assert await first is True
    assert not second.done()
    assert await queue.take(10) == [4, 5]
    assert await second is True
    assert len(queue) == 0


async def test_a_refused_request_is_never_handed_over_even_to_a_waiting_reader() -> None:
    queue: HandoverQueue[int] = HandoverQueue(100)
    reader = asyncio.create_task(queue.take(10))
    await asyncio.sleep(0)
    # the deadline strikes before the waiting reader runs: the request is refused and the
    # reader, woken by its items, skips them
    assert await queue.offer([1, 2], timeout=0) is False
    assert await reader == []
    later = offer(queue, [3])
    assert await queue.take(10) == [3]
    assert await later is True


async def test_items_taken_as_the_deadline_passes_count_as_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    queue: HandoverQueue[int] = HandoverQueue(100)
    offered = offer(queue, [1, 2], timeout=60.0)
    await until(lambda: len(queue) == 2)
    reader = asyncio.create_task(queue.take(10))  # runs first in the next turn of the loop
    monkeypatch.setattr(loop, "time", lambda: clock() + 120.0)  # then the deadline strikes
    try:
        assert await offered is True, "the stream took the items: the answer must be yes"
        assert await reader == [1, 2]
    finally:
        monkeypatch.undo()


async def test_an_offer_cancelled_while_queued_is_skipped() -> None:
    queue: HandoverQueue[int] = HandoverQueue(100)
    gone = offer(queue, [1, 2])  # e.g. the client hung up and its handler was cancelled
    kept = offer(queue, [3])
    await until(lambda: len(queue) == 3)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await queue.take(10) == [3]
    assert await kept is True


async def test_pending_items_are_bounded_and_a_full_queue_refuses_after_the_timeout() -> None:
    queue: HandoverQueue[int] = HandoverQueue(2)
    first = offer(queue, [1, 2])
    waiting = offer(queue, [3])
    await until(lambda: len(queue) == 2)
    assert await queue.offer([4], timeout=0.01) is False  # never found room
    assert len(queue) == 2 and not waiting.done()
    assert await queue.take(10) == [1, 2]
    assert await first is True
    await until(lambda: len(queue) == 1)  # room: the waiting request is queued now
    assert await queue.take(10) == [3]
    assert await waiting is True


async def test_one_request_larger_than_the_bound_is_queued_whole() -> None:
    queue: HandoverQueue[int] = HandoverQueue(2)
    big = offer(queue, [1, 2, 3, 4, 5])
    await until(lambda: len(queue) == 5)
    assert await queue.take(1) == [1, 2, 3, 4, 5]
    assert await big is True


async def test_close_hands_over_what_is_queued_and_refuses_the_rest() -> None:
    queue: HandoverQueue[int] = HandoverQueue(2)
    queued = offer(queue, [1, 2])
    waiting_for_room = offer(queue, [3])
    await until(lambda: len(queue) == 2)
    queue.close()
    queue.close()  # idempotent
    assert queue.closed
    await until(waiting_for_room.done)
    assert waiting_for_room.result() is False
    assert await queue.offer([4], timeout=None) is False
    assert await queue.take(10) == [1, 2]
    assert await queued is True
    assert await asyncio.wait_for(queue.take(10), 5) is None


async def test_refuse_queued_refuses_what_the_stream_has_not_taken() -> None:
    queue: HandoverQueue[int] = HandoverQueue(100)
    queued = [offer(queue, [1, 2]), offer(queue, [3])]
    await until(lambda: len(queue) == 3)
    queue.refuse_queued()
    queue.close()
    await until(lambda: all(task.done() for task in queued))  # answered now, not at timeout
    assert [task.result() for task in queued] == [False, False]
    assert await asyncio.wait_for(queue.take(10), 5) is None  # nothing refused is handed over
    assert len(queue) == 0


async def test_refuse_queued_keeps_the_queue_open() -> None:
    queue: HandoverQueue[int] = HandoverQueue(100)
    refused = offer(queue, [1])
    await until(lambda: len(queue) == 1)
    queue.refuse_queued()
    await until(refused.done)
    assert refused.result() is False
    later = offer(queue, [2])
    assert await queue.take(10) == [2]
    assert await later is True


async def test_an_empty_offer_is_taken_at_once() -> None:
    queue: HandoverQueue[int] = HandoverQueue(1)
    assert await queue.offer([], timeout=0) is True
    assert len(queue) == 0
