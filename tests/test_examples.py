"""Every example runs and prints what it promises."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 180,
                env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def on_ray(ray_session: None) -> dict[str, str]:
    """The environment of an example joining the test session's Ray."""
    import ray

    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


def test_hello_on_memory() -> None:
    assert run_example("hello.py", "memory").splitlines() == ["hello", "world"]


def test_hello_on_the_default_transport(on_ray: dict[str, str]) -> None:
    assert run_example("hello.py", env=on_ray).splitlines() == ["hello", "world"]


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_word_count(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    lines = run_example("word_count.py", transport, env=env).splitlines()
    counts: dict[str, int] = {}
    for line in lines:
        assert line.startswith("result (")
        word, count = ast.literal_eval(line.removeprefix("result "))
        counts[word] = count
    words = (EXAMPLES / "word_count.py").read_text().split()
    expected = {w: words.count(w) for w in words if w != "ray"}
    assert counts == expected


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_windows(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    out = run_example("windows.py", transport, env=env).splitlines()
    views = [line for line in out if line.startswith("views of")]  # dead letters interleave
    assert views == [
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


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_checkpoints_example_resumes_with_its_windows(transport: str,
                                                      request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    assert run_example("checkpoints.py", transport, env=env).splitlines() == [
        "stopped; resuming",
        "ann ordered 3 times in [0s, 60s)",
        "bob ordered 1 times in [0s, 60s)",
    ]


READMES = [EXAMPLES.parent / "README.md", *EXAMPLES.parent.glob("*/*/README.md")]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(EXAMPLES.parent)))
def test_readme_snippets_come_from_the_examples(readme: Path) -> None:
    blocks = readme.read_text().split("```python\n")[1:]
    sources = [path.read_text() for path in EXAMPLES.glob("*.py")]
    assert blocks, "the README shows code"
    for block in blocks:
        snippet = block.split("```")[0]
        assert any(snippet in source for source in sources), f"not in any example:\n{snippet}"


def test_actors_example(on_ray: dict[str, str]) -> None:
    assert run_example("actors.py", env=on_ray).splitlines() == [
        "Counter saw 1000", "BatchCounter saw 1000"
    ]


def test_quotes_on_ray(on_ray: dict[str, str]) -> None:
    assert run_example("quotes.py", env=on_ray).splitlines() == [
        "#rayvens AAPL is up", "#rayvens AAPL is unchanged", "#rayvens AAPL is down"
    ]


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_embedded_in_aiohttp(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    assert run_example("embed_aiohttp.py", transport, env=env).splitlines() == [
        "POST /orders 202", "POST /orders 202", "POST /orders 202", "POST /orders 400",
        "GET /totals {'ann': 8, 'bob': 7}",
    ]


def test_custom_connector(tmp_path: Path) -> None:
    path = tmp_path / "rolls.jsonl"
    out = run_example("custom_connector.py", str(path)).splitlines()
    rolls = [int(line) for line in path.read_text().splitlines()]
    assert len(rolls) == 100 and set(rolls) <= set(range(1, 7))
    assert out == [
        "wrote 100 rolls to rolls.jsonl",
        f"rolled {rolls.count(6)} sixes",
        "bad config: dice-source: field 'rolls': Field required (also field 'rols': Extra "
        "inputs are not permitted (did you mean 'rolls'?))",
    ]


def test_files_pipeline() -> None:
    assert run_example("files_pipeline.py", "memory").splitlines() == [
        "errors/<run>-0000000000.jsonl: [{'error': 'disk full'}, {'error': 'disk still full'}]",
        "logs/app.log: 70 bytes",
        "last checkpoint: True",
    ]


def test_ray_jobs_example() -> None:
    # It starts a Ray head with the job server of its own (RayJobCluster), stopped at its end.
    assert run_example("ray_jobs.py").splitlines() == [
        "hello Ray, and you: 3 items",
        "python hello_job.py -k 'who=Ray, and you' items=a,b,c SUCCEEDED",
        "last status event: SUCCEEDED",
    ]
