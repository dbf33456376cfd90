"""examples/kafka_pipeline.py runs against its own test broker and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "kafka_pipeline.py"


def test_kafka_pipeline_example() -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVENTRAY_TEST_KAFKA"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "memory"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines) == sorted([
        "ann {'id': 1, 'user': 'ann', 'amount': 120}",
        "ann {'id': 3, 'user': 'ann', 'amount': 250}",
        "cy {'id': 4, 'user': 'cy', 'amount': 100}",
        "dead letter: JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1) (topic 'orders', partition 1, offset 1)",
    ])
