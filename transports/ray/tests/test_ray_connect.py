"""How ``er.connect`` finds Ray: as a Ray client over ``ray://``, and by starting a local Ray
that it shuts down again. Each runs in a fresh process, as a user's program would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_ray.testing import RayHead

PROGRAM = textwrap.dedent("""
    import asyncio, sys
    import eventray as er

    async def main():
        async with er.connect(*sys.argv[1:]) as bus:
            topic = bus.topic("example")
            topic >> print
            topic << "hello" << "world"
            await topic.flush()
            print(sorted(await bus.from_values(1, 2, 3).map(lambda v: v * 10).key_by(str)
                  .reduce(max).collect(parallelism=2)))
            print("attached", bus.transport.attached)

    asyncio.run(main())
""")


def run(*args: str, env: dict[str, str], head: RayHead | None = None) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                          text=True, timeout=180, env=env)
    logs = head.logs("ray_client_server*.err") if head is not None else ""
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{logs}"
    return done.stdout.splitlines()


def processes_under(path: Path) -> list[str]:
    """Processes whose command line mentions ``path`` (a Ray session's temp directory)."""
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if str(path) in line]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp directory with a short path: Ray's unix sockets allow 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="er-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ray_client_url(short_tmp: Path) -> None:
    with RayHead.start(short_tmp) as head:
        assert run(head.client_url, env=head.env, head=head) == [
            "hello", "world", "[10, 20, 30]", "attached True"
        ]
    assert processes_under(short_tmp) == []


def test_starts_a_local_ray_and_shuts_it_down(short_tmp: Path) -> None:
    env = RayHead.isolated_env(short_tmp)
    assert run("ray", env=env) == ["hello", "world", "[10, 20, 30]", "attached True"]
    deadline = time.monotonic() + 20
    while processes_under(short_tmp) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_under(short_tmp) == [], "a Ray eventray started is stopped on close"


def test_client_connection_is_retried_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry policy alone (pure logic): a server-side start-up failure is tried again,
    at most CLIENT_ATTEMPTS times, then reported."""
    from eventray_ray import _connection

    calls: list[str] = []

    def failing_init(address: str, **options: object) -> None:
        calls.append(address)
        if len(calls) < 3:
            raise ConnectionAbortedError("Initialization failure from server")

    monkeypatch.setattr(_connection.ray, "init", failing_init)
    monkeypatch.setattr(_connection.ray, "shutdown", lambda: None)
    monkeypatch.setattr(_connection.time, "sleep", lambda seconds: None)
    _connection._init_client("ray://127.0.0.1:1", {})
    assert len(calls) == 3
    calls.clear()
    monkeypatch.setattr(_connection, "CLIENT_ATTEMPTS", 2)
    with pytest.raises(ConnectionAbortedError):
        _connection._init_client("ray://127.0.0.1:1", {})
    assert len(calls) == 2
