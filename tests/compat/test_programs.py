"""The seeds' programs (Rayvens, Ray Streaming) and programs in the style of Rayvens' examples,
each run as a program of its own with only its import changed, on the test session's Ray."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import time
from asyncio.subprocess import Process
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_http.testing import Reply, ScriptedEndpoint, SlackWebhook

PROGRAMS = Path(__file__).resolve().parent / "programs"

pytestmark = pytest.mark.ray

ENDS_WITHIN = 120  # seconds a program may take to end by itself


def named_actors() -> set[tuple[str, str]]:
    import ray

    return {(a["namespace"], a["name"]) for a in ray.util.list_named_actors(all_namespaces=True)}


@pytest.fixture
def on_ray(ray_session: None) -> Iterator[dict[str, str]]:
    """The environment of a program joining the session's Ray; afterwards, no named actor
    the program created is left in the cluster."""
    import ray

    before = named_actors()
    yield {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    deadline = time.monotonic() + 30  # a driver's actors die with it, soon after it exits
    while (left := named_actors() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"actors left in the cluster: {left}"


async def start(name: str, *args: str, env: dict[str, str] | None) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PROGRAMS / name), *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(name: str, *args: str, env: dict[str, str] | None) -> tuple[str, str]:
    """Run a program, wait for it to end by itself, return its output (and error output)."""
    return await finish(await start(name, *args, env=env))


async def finish(process: Process) -> tuple[str, str]:
    """Close the program's standard input and wait (up to ``ENDS_WITHIN``) for it to end."""
    try:
        async with asyncio.timeout(ENDS_WITHIN):
            out, err = await process.communicate(b"")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode(), err.decode()


def test_seed_hello_prints_hello_then_world(on_ray: dict[str, str]) -> None:
    out, _ = asyncio.run(run("hello.py", env=on_ray))
    assert out.splitlines() == ["hello", "world"]


def test_seed_hello_starting_its_own_ray() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out, err = asyncio.run(run("hello.py", env=env))
    assert out.splitlines() == ["hello", "world"]
    assert "Started a local Ray instance" in err  # the program's own ray.init(), not ours


def test_seed_word_count_prints_the_counts(on_ray: dict[str, str]) -> None:
    out, _ = asyncio.run(run("word_count.py", env=on_ray))
    counts: dict[str, int] = {}
    for line in out.splitlines():
        assert line.startswith("result (")
        word, count = ast.literal_eval(line.removeprefix("result "))
        counts[word] = count  # reduce emits running counts: the last one is the total
    words = (PROGRAMS / "word_count.py").read_text().split()
    assert counts == {w: words.count(w) for w in words if w != "ray"}  # the seed filters "ray"


def test_seed_java_bridge_is_a_clear_error(on_ray: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, str(PROGRAMS / "java_bridge.py")], env=on_ray,
                          capture_output=True, text=True, timeout=ENDS_WITHIN)
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "NotImplementedError: Java operators are not available on eventray (its stages run "
        "Python only); write the operator as a Python function")
    assert done.stdout == ""


def test_rayvens_pubsub_delivers_to_both_functions_in_order(on_ray: dict[str, str]) -> None:
    out, _ = asyncio.run(run("pubsub.py", env=on_ray))
    lines = out.splitlines()
    for handler in ("handler1", "handler2"):
        assert [line for line in lines if line.startswith(handler)] == [
            f"{handler} received event {i}" for i in range(10)
        ]
    assert len(lines) == 20


def test_rayvens_actor_and_task_subscribers(on_ray: dict[str, str], tmp_path: Path) -> None:
    asyncio.run(run("actors_and_tasks.py", str(tmp_path), env=on_ray))
    # published before the script ended, delivered before it exited; in order per actor
    running = [sum(range(i + 1)) for i in range(10)]
    for actor in ("actor1", "actor2"):
        assert (tmp_path / actor).read_text().splitlines() == [
            f"{actor} = {value}" for value in running
        ]
    assert (tmp_path / "recorder").read_text().splitlines() == [str(i) for i in range(10)]
    for i in range(10):
        assert (tmp_path / f"task-{i}").read_text() == f"task received {i}\n"


async def test_seed_slack_example_posts_quote_changes(on_ray: dict[str, str]) -> None:
    prices = [189.0, 190.5, 190.5, 188.2]
    script = [Reply(200, [{"symbol": "AAPL", "price": p}]) for p in prices] + [Reply(503)]
    async with ScriptedEndpoint(script) as quotes, SlackWebhook() as slack:
        program = await start("seed_slack.py", "#rayvens", slack.url, quotes.url, env=on_ray)
        messages = await slack.wait_for(3, timeout=90)
        assert [(m["channel"], m["text"]) for m in messages] == [
            ("#rayvens", "AAPL is up"), ("#rayvens", "AAPL is unchanged"),
            ("#rayvens", "AAPL is down"),
        ]
        await finish(program)  # it runs until its standard input is closed
        assert len(slack.messages) == 3


async def test_rayvens_batching_stream_to_slack(on_ray: dict[str, str]) -> None:
    async with SlackWebhook() as slack:
        out, _ = await run("batching_slack.py", "#rayvens", slack.url, "local", env=on_ray)
    texts = [(m["channel"], m["text"]) for m in slack.messages]
    # batches of two, the last (partial) one passed on by disconnect_all
    assert texts == [("#rayvens", "Hello World"), ("#rayvens", "Hello Mars"),
                     ("#rayvens", "Hello Jupiter"), ("#rayvens", "Bye")]
    assert out.splitlines() == [
        "sent Hello World", "sent Hello Mars", "sent Hello Jupiter", "sent Bye",
        "sink slack-sink events 4", "threads left []",
    ]


async def test_rayvens_multitask_operator_to_slack(on_ray: dict[str, str]) -> None:
    async with SlackWebhook() as slack:
        await run("multitask_slack.py", "#rayvens", slack.url, "mixed", env=on_ray)
    assert sorted(m["text"] for m in slack.messages) == [
        f"sub-task sub-event{i}" for i in range(3)
    ]


async def test_rayvens_streams_from_http_source_to_slack(on_ray: dict[str, str]) -> None:
    prices = [189.0, 190.5, 190.5, 188.2]
    script = [Reply(200, {"quoteResponse": {"result": [{"regularMarketPrice": p}]}})
              for p in prices] + [Reply(503)]  # then the endpoint fails: the source idles
    async with ScriptedEndpoint(script) as quotes, SlackWebhook() as slack:
        out, _ = await run("streams_quotes.py", "#rayvens", slack.url, quotes.url, env=on_ray)
    assert [(m["channel"], m["text"]) for m in slack.messages] == [
        ("#rayvens", "AAPL is up"), ("#rayvens", "AAPL is stable"), ("#rayvens", "AAPL is down"),
    ]
    lines = out.splitlines()
    assert lines[0] == "source http-source"  # Rayvens' name for it: its kind
    logged = [json.loads(line.removeprefix("LOG: ")) for line in lines[1:]]
    assert [q["quoteResponse"]["result"][0]["regularMarketPrice"] for q in logged] == prices
