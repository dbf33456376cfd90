"""Putting calls back in order: async actors may run calls in any order, so senders number
them and the receiver lets each sender's calls through one after the other."""

from __future__ import annotations

import asyncio


class Sequencer:
    """Admits the calls of each sender in the order of their sequence numbers (from 0)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._parked: dict[tuple[str, int], asyncio.Future[None]] = {}

    async def wait_turn(self, sender: str, seq: int) -> None:
        """Return once every earlier call of ``sender`` is ``done``."""
        if self._next.get(sender, 0) != seq:
            parked = asyncio.get_running_loop().create_future()
            self._parked[(sender, seq)] = parked
            await parked

    def done(self, sender: str, seq: int) -> None:
        """Let the next call of ``sender`` in."""
        self._next[sender] = seq + 1
        waiting = self._parked.pop((sender, seq + 1), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
