"""The receiving end of stage channels, without Ray: pushes admitted in sequence order, a
restored receiver taking replayed pushes in the order it had taken them, and what it already
has dropped (older replay generations, sequence numbers, record offsets)."""

from __future__ import annotations

import asyncio
from typing import Any

from eventray.spi import Batch, End
from eventray_ray._stage_actor import OrderedInbox

A, B = "job.source.0", "job.source.1"


def header(seq: int, offset: int, generation: int = 0, place: int = -1) -> tuple[int, ...]:
    return (0, 0, seq, offset, generation, place)


async def _taken(inbox: OrderedInbox, count: int) -> list[Any]:
    items: list[Any] = []
    while len(items) < count:
        got = await asyncio.wait_for(inbox.get(100), 5)
        assert got is not None
        items += got
    return items


async def test_pushes_of_a_sender_are_taken_in_sequence_order() -> None:
    inbox = OrderedInbox(8)
    late = asyncio.ensure_future(inbox.push(A, header(1, 1), [Batch(["second"])]))
    await asyncio.sleep(0)
    assert await inbox.push(A, header(0, 0), [Batch(["first"])]) == 0
    assert await late == 1
    assert [b.values for b in await _taken(inbox, 2)] == [["first"], ["second"]]


async def test_a_restored_receiver_takes_the_replay_in_the_order_it_had() -> None:
    inbox = OrderedInbox(8)
    inbox.channels.restore({"taken": 5, "senders": {
        A: (0, 3, 30, 0, False, 0), B: (0, 3, 30, 0, False, 0)}})
    inbox.channels.expect({A: 1, B: 1}, {A: [5, 7], B: [6, 8, 2]})
    b_first = [asyncio.ensure_future(inbox.push(B, header(seq, 30 + 10 * (seq - 3), 1, place),
                                                [Batch([f"b{seq}"] * 10)]))
               for seq, place in ((3, 6), (4, 8))]
    live = asyncio.ensure_future(inbox.push(B, header(5, 50, 1), [Batch(["b-live"])]))
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in [*b_first, live])  # A's place 5 comes first
    a_pushes = [await inbox.push(A, header(seq, 30 + 10 * (seq - 3), 1, place),
                                 [Batch([f"a{seq}"] * 10)])
                for seq, place in ((3, 5), (4, 7))]
    assert a_pushes == [5, 7]
    assert [await t for t in b_first] == [6, 8]
    assert await live == 9
    taken = [b.values[0] for b in await _taken(inbox, 5)]
    assert taken == ["a3", "b3", "a4", "b4", "b-live"]


async def test_what_the_receiver_has_is_dropped() -> None:
    inbox = OrderedInbox(8)
    inbox.channels.restore({"taken": 2, "senders": {A: (0, 2, 20, 0, False, 0)}})
    inbox.channels.expect({A: 1}, {})
    assert await inbox.push(A, header(2, 20, generation=0), [Batch([1])]) == -1  # old replay
    assert await inbox.push(A, header(1, 10, generation=1), [Batch([1] * 10)]) == -1  # had it
    # a sender restored with other batch boundaries: the first 5 records it has already
    assert await inbox.push(A, header(2, 15, generation=1), [Batch(list(range(10)))]) == 2
    assert await inbox.push(A, header(3, 25, generation=1), [End(A)]) == 3
    batch, end = await _taken(inbox, 2)
    assert batch.values == [5, 6, 7, 8, 9]
    assert isinstance(end, End)
    assert await inbox.push(A, header(4, 25, generation=1), [End(A)]) == -1  # one end only
