"""The event loop never blocks on Ray: an SDK made to embed in async applications must not
stall them. Each check runs a program under asyncio debug mode, which logs every callback
that holds the loop longer than ``slow_callback_duration``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventray_ray.testing import RayHead

ROUND_TRIP = textwrap.dedent("""
    import asyncio, logging
    import eventray as er

    slow = []

    class Slow(logging.Handler):
        def emit(self, record):
            if "Executing" in record.getMessage():
                slow.append(record.getMessage())

    logging.getLogger("asyncio").addHandler(Slow())

    async def main():
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.1
        async with er.connect("ray", num_cpus=1) as bus:
            topic = bus.topic("numbers")
            got = []
            topic >> got.append
            for i in range(2000):  # large batches go through the object store
                topic << i
            await topic.flush()
            assert got == list(range(2000)), got[:10]
            totals = await (bus.from_values(*range(10)).key_by(lambda v: v % 2)
                            .reduce(lambda a, b: a + b).collect(parallelism=2))
            assert {20, 25} <= set(totals), totals

    asyncio.run(main(), debug=True)
    print("slow callbacks:", len(slow))
    for message in slow:
        print(message)
""")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="er-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_ray_round_trip_never_blocks_the_event_loop(short_tmp: Path) -> None:
    """Connect (starting a local Ray), publish and subscribe, a stream with stage actors,
    close: not one callback holds the loop for 0.1 s."""
    done = subprocess.run([sys.executable, "-c", ROUND_TRIP], capture_output=True, text=True,
                          timeout=170, env=RayHead.isolated_env(short_tmp))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "slow callbacks: 0", done.stdout


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_the_aiohttp_example_never_blocks_its_event_loop(short_tmp: Path) -> None:
    env = {**RayHead.isolated_env(short_tmp), "PYTHONASYNCIODEBUG": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "embed_aiohttp.py"), "ray"],
                          capture_output=True, text=True, timeout=170, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GET /totals {'ann': 8, 'bob': 7}" in done.stdout
    slow = [line for line in done.stderr.splitlines() if "Executing" in line]
    assert slow == [], "\n".join(slow)
