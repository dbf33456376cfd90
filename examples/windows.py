"""Windows: page views counted per page in 10-second tumbling windows of event time, and
visits split into sessions by 30 seconds of quiet. Views may arrive up to 5 seconds out of
order; a later one is a dead letter.

    python examples/windows.py           # on the default transport
    python examples/windows.py memory    # in this process only
"""

import asyncio
import sys
from collections.abc import Callable

import eventray as er

# (seconds since the start, visitor, page); slightly out of order, the last one very late
VIEWS = [
    (1, "ann", "/home"), (3, "bob", "/home"), (2, "ann", "/docs"), (9, "ann", "/docs"),
    (12, "bob", "/pricing"), (11, "ann", "/home"), (14, "bob", "/home"), (25, "ann", "/docs"),
    (58, "bob", "/docs"), (4, "cat", "/home"),
]
START = 1_700_000_000_000


def view(item: tuple[int, str, str]) -> dict[str, object]:
    seconds, visitor, page = item
    return {"ts": START + seconds * 1000, "visitor": visitor, "page": page}


def show(label: str) -> Callable[[er.WindowResult], None]:
    def printer(result: er.WindowResult) -> None:
        start = (result.start - START) // 1000
        end = (result.end - START) // 1000
        print(f"{label} {result.key} [{start}s, {end}s): {result.value}")

    return printer


async def main(url: str | None = None) -> None:
    async with er.connect(url) as bus:
        bus.dead_letters >> (lambda letter: print("late:", letter.value["page"], letter.error))
        views = bus.from_collection([view(v) for v in VIEWS]).with_timestamps(lambda v: v["ts"])
        await (
            views.key_by(lambda v: v["page"])
            .window(er.Tumbling(seconds=10, lateness=5))
            .count()
            .sink(show("views of"))
            .collect()
        )
        await (
            views.key_by(lambda v: v["visitor"])
            .window(er.Session(gap=30, lateness=5))
            .aggregate(list, lambda pages, v: [*pages, v["page"]], merge=lambda a, b: a + b)
            .sink(show("session of"))
            .collect()
        )
        await bus.dead_letters.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
