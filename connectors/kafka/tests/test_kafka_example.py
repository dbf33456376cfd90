"""The Kafka examples run against their own test broker and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def run_example(name: str, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "EVENTRAY_TEST_KAFKA"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_kafka_pipeline_example() -> None:
    lines = run_example("kafka_pipeline.py", "memory")
    assert sorted(lines) == sorted([
        "ann {'id': 1, 'user': 'ann', 'amount': 120}",
        "ann {'id': 3, 'user': 'ann', 'amount': 250}",
        "cy {'id': 4, 'user': 'cy', 'amount': 100}",
        "dead letter: JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1) (topic 'orders', partition 1, offset 1)",
    ])


def test_kafka_topics_example_resumes_from_the_group() -> None:
    assert run_example("kafka_topics.py") == [
        "run 1: {'1': 2, 'bye': 1, 'hello': 1, 'run': 2, 'says': 2}",
        "run 2: {'2': 2, 'bye': 1, 'hello': 1, 'run': 2, 'says': 2}",  # only the new lines
    ]
