"""Every example runs and prints what it promises."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hello_on_memory() -> None:
    assert run_example("hello.py", "memory").splitlines() == ["hello", "world"]


def test_word_count_on_memory() -> None:
    lines = run_example("word_count.py", "memory").splitlines()
    counts: dict[str, int] = {}
    for line in lines:
        assert line.startswith("result (")
        word, count = ast.literal_eval(line.removeprefix("result "))
        counts[word] = count
    words = (EXAMPLES / "word_count.py").read_text().split()
    expected = {w: words.count(w) for w in words if w != "ray"}
    assert counts == expected


def test_windows_on_memory() -> None:
    out = run_example("windows.py", "memory").splitlines()
    assert out[:6] == [
        "views of /home [0s, 10s): 2",
        "views of /docs [0s, 10s): 2",
        "views of /pricing [10s, 20s): 1",
        "views of /home [10s, 20s): 2",
        "views of /docs [20s, 30s): 1",
        "views of /docs [50s, 60s): 1",
    ]
    assert "session of ann [1s, 55s): ['/home', '/docs', '/docs', '/home', '/docs']" in out
    assert "session of bob [58s, 88s): ['/docs']" in out
    late = [line for line in out if line.startswith("late: /home LateEvent")]
    assert len(late) == 2, "cat's view is late for both windowings"
