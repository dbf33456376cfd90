"""Keys go to the same partition when they are equal, in every process."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from eventray.spi import Batch, split_by_key

KEYS = "['user-1', b'raw', 42, -7, 2.5, None, ('a', 1), frozenset({'x', 'y', 'z', 'w'}), " \
       "(frozenset({'k1', 'k2', 'k3'}), 'v')]"
SCRIPT = f"""
from eventray.spi import Batch, split_by_key
keys = {KEYS}
parts = split_by_key(Batch(list(range(len(keys))), keys=keys), 7)
print(sorted((value, part) for part, batch in enumerate(parts) for value in batch.values))
"""


def partition_of(key: object, parts: int = 7) -> int:
    batch = Batch(["v"], keys=[key])
    return next(i for i, b in enumerate(split_by_key(batch, parts)) if len(b))


def test_equal_keys_share_a_partition() -> None:
    for equal in ([1, 1.0, True, Fraction(1), Decimal(1), complex(1, 0)],
                  [0, 0.0, False, -0.0], [2.5, Fraction(5, 2), Decimal("2.5")],
                  [("a", 1), ("a", 1.0), ("a", True)]):
        assert len({partition_of(key) for key in equal}) == 1, equal


@dataclass(frozen=True)
class Point:
    x: object
    y: object = 0


def test_equal_dataclasses_and_moments_share_a_partition() -> None:
    utc = dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC)
    plus_one = dt.datetime(2020, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    for equal in ([Point(1), Point(1.0), Point(True, 0.0)], [utc, plus_one],
                  [dt.date(2020, 1, 2), dt.date(2020, 1, 2)]):
        assert all(key == equal[0] for key in equal)
        for parts in (2, 3, 5, 7):
            assert len({partition_of(key, parts) for key in equal}) == 1, (equal, parts)


def test_partitions_do_not_depend_on_the_hash_seed() -> None:
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                              env=env, timeout=60, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs

