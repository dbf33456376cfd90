"""Resume after a crash: a driver SIGKILLed mid-stream, run again with ``resume=True``,
continues from its latest complete checkpoint, and the per-key results a sink sees last are
exact (the sink is at-least-once: values since the checkpoint come again)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import pytest

N = 30_000
KEYS = 5

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys
    import eventray as er

    transport, out, store, mode, n = sys.argv[1:6]

    async def paced(x):
        if x % 100 == 0:
            await asyncio.sleep(0.01)  # slow enough for the test to kill it mid-stream
        return (f"k{x % 5}", x)

    async def main():
        options = {"namespace": "resume-test"} if transport == "ray" else {}
        async with er.connect(transport, **options) as bus:
            with open(out, "a") as file:
                def write(kv):
                    file.write(f"{kv[0]} {kv[1]}\\n")
                    file.flush()
                job = await (
                    bus.from_collection(range(int(n))).map(paced)
                    .key_by(lambda kv: kv[0]).reduce(lambda a, b: (a[0], a[1] + b[1]))
                    .sink(write)
                    .run("resumable", parallelism=2, checkpoint_interval=0.2,
                         checkpoint_store=store, resume=mode == "resume")
                )
                await job.wait()
                read = sum(m["records_in"] for name, m in job.metrics().items()
                           if "from_collection" in name)
                print(json.dumps({"read": read}), flush=True)

    asyncio.run(main())
""")


def _program_env(transport: str) -> dict[str, str]:
    env = {**os.environ}
    if transport == "ray":
        import ray

        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    return env


def _complete_checkpoints(store: Path) -> list[Path]:
    job = store / "resumable"
    if not job.is_dir():
        return []
    return [p for p in job.iterdir() if p.name.isdigit() and (p / "MANIFEST.json").exists()]


def test_resume_after_the_driver_was_killed(transport_url: str, tmp_path: Path) -> None:
    out, store = tmp_path / "out.txt", tmp_path / "checkpoints"
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = _program_env(transport_url)
    args = [sys.executable, str(script), transport_url, str(out), str(store)]
    first = subprocess.Popen([*args, "fresh", str(N)], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_complete_checkpoints(store)) < 2 or not out.exists():
            assert first.poll() is None, "the program ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 60s"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert "[" not in out.read_text()  # nothing but our own lines so far
    second = subprocess.run([*args, "resume", str(N)], env=env, capture_output=True,
                            timeout=120, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    read = int(second.stdout.strip().splitlines()[-1].split(":")[1].strip(" }"))
    assert 0 < read < N, f"the resumed run read {read} records: it did not resume"
    last: dict[str, int] = {}
    counts: defaultdict[str, int] = defaultdict(int)
    for line in out.read_text().splitlines():
        key, value = line.split()
        last[key] = int(value)
        counts[key] += 1
    expected = {f"k{k}": sum(range(k, N, KEYS)) for k in range(KEYS)}
    assert last == expected
    assert sum(counts.values()) < 2 * N  # the first run's work was not all done again


@pytest.mark.parametrize("transport_url", ["memory"], indirect=True)
def test_resume_without_a_checkpoint_starts_fresh(transport_url: str, tmp_path: Path) -> None:
    out, store = tmp_path / "out.txt", tmp_path / "checkpoints"
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script), transport_url, str(out), str(store),
                           "resume", "1000"], capture_output=True, timeout=60, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"read": 1000' in done.stdout
