"""Run the benchmarks of shared/WORKLOADS.md.

    python bench/run.py T1 --transport memory --events 1000000 --repeat 5
    python bench/run.py all          # every workload at its default size; appends RESULTS.md

Each run prints one line per implementation (eventray and the baselines measured in the same
run); with --repeat the medians follow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from .checkpoints import w6
from .harness import Options, Row, Workload, append_results, emit, medians
from .kafka import w2
from .ray_delivery import w4
from .streams import w1, w3, w5
from .topics import t1
from .webhook import wh


@dataclass(frozen=True)
class Spec:
    run: Workload
    events: int
    transports: tuple[str, ...]
    parallelism: tuple[int, ...] = (1,)


WORKLOADS: dict[str, Spec] = {
    "T1": Spec(t1, 1_000_000, ("memory",)),
    "W1": Spec(w1, 1_000_000, ("memory", "ray"), (1, 2)),
    "W2": Spec(w2, 200_000, ("memory", "ray")),
    "W3": Spec(w3, 1_000_000, ("memory", "ray")),
    "W4": Spec(w4, 100_000, ("ray",)),
    "W5": Spec(w5, 100_000, ("memory", "ray"), (1, 2)),
    "W6": Spec(w6, 1_000_000, ("ray",), (2,)),
    "WH": Spec(wh, 20_000, ("memory",)),
}


def start_ray() -> None:
    """One Ray for every run, as WORKLOADS.md says: 2 CPUs, no dashboard, on 127.0.0.1."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False,
             logging_level=logging.WARNING)


def run(name: str, options: Options, repeat: int) -> list[Row]:
    rows: list[Row] = []
    for _ in range(repeat):
        for row in WORKLOADS[name].run(options):
            emit(row)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("workload", choices=[*WORKLOADS, "all"])
    parser.add_argument("--transport", default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--parallelism", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--record", action="store_true",
                        help="append the medians to bench/RESULTS.md (always done by 'all')")
    args = parser.parse_args(argv)
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    repeat = args.repeat or (5 if args.workload == "all" else 1)
    if any("ray" in (args.transport or ",".join(WORKLOADS[n].transports)) for n in names):
        start_ray()
    everything: list[Row] = []
    for name in names:
        spec = WORKLOADS[name]
        transports = [args.transport] if args.transport else list(spec.transports)
        levels = [args.parallelism] if args.parallelism else list(spec.parallelism)
        for transport in transports:
            for parallelism in levels:
                options = Options(transport, args.events or spec.events, parallelism)
                everything += run(name, options, repeat)
    summary = medians(everything)
    if repeat > 1:
        print(f"medians of {repeat} runs:")
        for row in summary:
            print("  " + row.line())
    if args.workload == "all" or args.record:
        command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
        append_results(summary, repeat, command)
    return 0 if all(row.ok for row in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
