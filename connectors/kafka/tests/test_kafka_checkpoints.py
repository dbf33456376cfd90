"""Kafka offsets and checkpoints: offsets are committed only once a checkpoint holding them is
durable, and a driver SIGKILLed mid-stream resumes from its checkpoint (``resume=True``) with
exact per-key sums: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kafka_helpers import orders

from eventray_kafka.testing import KafkaBroker

N = 3000

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys
    import eventray as er
    from eventray_kafka import KafkaSource

    servers, topic, group, out, store, mode = sys.argv[1:7]

    async def paced(order):
        if order["id"] % 50 == 0:
            await asyncio.sleep(0.02)  # slow enough to be killed mid-stream
        return (order["user"], order["id"])

    async def main():
        source = KafkaSource(bootstrap_servers=servers, topic=topic, group_id=group,
                             from_beginning=True, session_timeout_ms=6000,
                             heartbeat_interval_ms=1000)
        async with er.connect("memory") as bus:
            with open(out, "a") as file:
                def write(kv):
                    file.write(json.dumps(kv) + "\\n")
                    file.flush()
                job = await (bus.from_source(source).map(paced).key_by(lambda kv: kv[0])
                             .reduce(lambda a, b: (a[0], a[1] + b[1])).sink(write)
                             .run("kafka-sums", checkpoint_interval=0.2,
                                  checkpoint_store=store, resume=mode == "resume"))
                while True:
                    sums = {}
                    for line in open(out):
                        key, value = json.loads(line)
                        sums[key] = value
                    if sum(1 for _ in open(out)) and mode == "resume" and sums == EXPECTED:
                        break
                    await asyncio.sleep(0.1)
                await job.stop(drain=True)

    EXPECTED = {f"u{k}": sum(range(k, int(sys.argv[7]), 7)) for k in range(7)}
    asyncio.run(main())
""")


def _checkpoints(store: Path) -> list[Path]:
    job = store / "kafka-sums"
    return sorted(p for p in job.iterdir() if p.name.isdigit()) if job.is_dir() else []


async def test_offsets_follow_checkpoints_and_a_killed_driver_resumes_exactly(
    kafka: KafkaBroker, topic: str, tmp_path: Path
) -> None:
    await kafka.create_topic(topic, partitions=2)
    await kafka.produce(topic, orders(N))
    group, out, store = f"g-{topic}", tmp_path / "out.jsonl", tmp_path / "checkpoints"
    out.touch()
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    args = [sys.executable, str(script), kafka.bootstrap_servers, topic, group, str(out),
            str(store)]
    env = {**os.environ}
    first = await asyncio.create_subprocess_exec(*args, "fresh", str(N), env=env,
                                                 stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_checkpoints(store)) < 2 or not sum(
            (await kafka.committed(group, topic)).values()
        ):
            assert first.returncode is None, "the program ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint and commit within 60s"
            await asyncio.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    committed = sum((await kafka.committed(group, topic)).values())
    assert 0 < committed < N  # killed mid-stream, having committed checkpointed offsets
    second = await asyncio.to_thread(subprocess.run, [*args, "resume", str(N)], env=env,
                                     capture_output=True, timeout=120, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    last: dict[str, int] = {}
    for line in out.read_text().splitlines():
        key, value = json.loads(line)
        last[key] = value
    assert last == {f"u{k}": sum(range(k, N, 7)) for k in range(7)}
    assert sum((await kafka.committed(group, topic)).values()) == N  # the drain committed all
