"""The benchmark harness: result lines, repeats, medians, and the RESULTS.md table."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Row:
    """One measured run of one implementation of a workload."""

    workload: str
    impl: str
    transport: str
    parallelism: int
    events: int
    seconds: float
    ok: bool
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        extras = " ".join(f"{k}={v:.3f}" for k, v in self.extra.items())
        return (
            f"workload={self.workload} impl={self.impl} transport={self.transport} "
            f"parallelism={self.parallelism} events={self.events} seconds={self.seconds:.3f} "
            f"events_per_s={self.events_per_s:.0f} {extras} ok={self.ok}".replace("  ", " ")
        )

    def key(self) -> tuple[str, str, str, int]:
        return (self.workload, self.impl, self.transport, self.parallelism)


@dataclass
class Options:
    transport: str
    events: int
    parallelism: int


Workload = Callable[[Options], list[Row]]


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed wall time in seconds."""
    out: list[float] = []
    started = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - started)


def medians(rows: list[Row]) -> list[Row]:
    """One row per (workload, impl, transport, parallelism): the median-seconds run."""
    groups: dict[tuple[str, str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault(row.key(), []).append(row)
    out = []
    for group in groups.values():
        seconds = statistics.median(r.seconds for r in group)
        extra = {k: statistics.median(r.extra[k] for r in group) for k in group[0].extra}
        first = group[0]
        out.append(
            Row(first.workload, first.impl, first.transport, first.parallelism, first.events,
                seconds, all(r.ok for r in group), extra)
        )
    return out


def versions() -> str:
    names = ["eventray", "ray", "aiokafka", "aiohttp"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def append_results(rows: list[Row], repeat: int, command: str) -> None:
    """Append a dated table of medians (with the baselines) to bench/RESULTS.md."""
    lines = [
        "",
        f"## {dt.date.today().isoformat()}: `{command}`",
        "",
        f"{machine()}; {versions()}. Medians of {repeat} runs.",
        "",
        "| workload | impl | transport | parallelism | events | seconds | events/s | extra | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        extra = ", ".join(f"{k} {v:.2f}" for k, v in row.extra.items())
        lines.append(
            f"| {row.workload} | {row.impl} | {row.transport} | {row.parallelism} | "
            f"{row.events:,} | {row.seconds:.3f} | {row.events_per_s:,.0f} | {extra} | "
            f"{row.ok} |"
        )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `python bench/run.py all`.\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")


def emit(row: Row) -> None:
    print(row.line(), flush=True)
    if not row.ok:
        print(f"  ^ {row.workload}/{row.impl} produced a wrong result", file=sys.stderr)
