"""Snapshot and restore of stateful operators and stage positions (the checkpoint hooks)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import eventray as er
from eventray._operators.ops import ApplyOp, ReduceOp
from eventray._operators.windows import COUNT, WindowOp
from eventray._runtime.readers import CollectionReader
from eventray._streams.stream import CollectOp
from eventray.spi import (
    Batch,
    EventStream,
    NullEmitter,
    OpContext,
    StageContext,
    StageMetrics,
    StagePlan,
    StageRunner,
    StreamOp,
)


class Collected(StageContext):
    def __init__(self) -> None:
        self.letters: list[er.DeadLetter] = []

    async def dead_letters(self, letters: list[er.DeadLetter]) -> None:
        self.letters += letters

    async def publish(self, topic: str, events: list[er.Event]) -> None:
        raise AssertionError("not used")

    async def subscribe(self, topic: str) -> EventStream:
        raise AssertionError("not used")


def context() -> OpContext:
    return OpContext("job", "stage", "dead-letter", Collected(), StageMetrics())


async def run_all(op: StreamOp, batches: list[Batch]) -> list[Any]:
    out: list[Any] = []
    for batch in batches:
        out += (await op.run(batch, context())).values
    held = await op.finish(context())
    return out + (held.values if held is not None else [])


def keyed(values: list[Any], key: Any, ts: list[int] | None = None) -> Batch:
    return Batch(values, [key(v) for v in values], ts)


async def resumed(prototype: StreamOp, first: list[Batch], rest: list[Batch]) -> list[Any]:
    """Run ``first``, checkpoint through pickle, restore into a fresh op, run ``rest``."""
    before = prototype.fresh()
    out: list[Any] = []
    for batch in first:
        out += (await before.run(batch, context())).values
    state = pickle.loads(pickle.dumps(before.snapshot()))
    after = prototype.fresh()
    after.restore(state)
    return out + await run_all(after, rest)


@pytest.mark.parametrize(
    "window",
    [er.Tumbling(seconds=1), er.Sliding(seconds=2, every=1), er.Session(gap=1, lateness=1)],
)
async def test_windows_resume_from_a_snapshot(window: Any) -> None:
    stamps = [100, 900, 1500, 2600, 2700, 4100, 4200, 7000]
    batches = [keyed([f"v{t}" for t in chunk], lambda v: int(v[1:]) % 2, chunk)
               for chunk in (stamps[:3], stamps[3:5], stamps[5:])]
    op = WindowOp(window, COUNT)
    straight = await run_all(op.fresh(), batches)
    assert sorted(await resumed(op, batches[:2], batches[2:])) == sorted(straight)
    assert sum(r.value for r in straight) >= len(stamps)


async def test_reduce_resumes_from_a_snapshot() -> None:
    batches = [keyed([1, 2, 3], lambda v: v % 2), keyed([4, 5, 6], lambda v: v % 2)]
    op = ReduceOp(lambda a, b: a + b)
    straight = await run_all(op.fresh(), batches)
    assert straight == [1, 2, 4, 6, 9, 12]
    assert await resumed(op, batches[:1], batches[1:]) == straight


async def test_user_operator_state_goes_through_apply() -> None:
    class Numbering:
        def __init__(self) -> None:
            self.seen = 0

        def process(self, batch: list[er.Event]) -> list[er.Event]:
            out = []
            for event in batch:
                self.seen += 1
                out.append(event.replace_value((self.seen, event.value)))
            return out

        def snapshot(self) -> int:
            return self.seen

        def restore(self, state: int) -> None:
            self.seen = state

    op = ApplyOp(Numbering())
    assert op.stateful
    batches = [Batch(["a", "b"]), Batch(["c"])]
    assert await resumed(op, batches[:1], batches[1:]) == [(1, "a"), (2, "b"), (3, "c")]


async def test_stage_snapshot_holds_reader_position_and_operator_state() -> None:
    def make_runner(plan: StagePlan) -> StageRunner:
        return StageRunner(plan, 0, job="job", stage_name="s", expected_ends=0,
                           ctx=Collected(), emitter=NullEmitter(), batch_size=4, linger=0,
                           on_error="dead-letter")

    values = list(range(10))
    collected: list[int] = []
    plan = StagePlan(0, 1, reader=CollectionReader(values),
                     ops=[ReduceOp(lambda a, b: a + b), CollectOp(collected)])
    first = make_runner(plan)
    batch = await first.reader.read(4)  # type: ignore[union-attr]
    assert batch is not None
    await first.process(batch)
    state = pickle.loads(pickle.dumps(first.snapshot()))
    assert state["reader"] == 4
    second = make_runner(plan)
    second.restore(state)
    await second.run()
    assert collected == [sum(values[: i + 1]) for i in range(10)]
