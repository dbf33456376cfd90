"""Several programs on one machine's Ray, as users run them: each a fresh process with no
Ray or eventray variables, the first starting the local Ray with ``er.connect()``, the others
joining it; whatever the import order, with unnamed streams, and losing the cluster when the
first one exits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent("""
    import sys, time
    if sys.argv[1] == "second":
        import ray  # before eventray: Ray reads its settings when imported
    import asyncio
    import eventray as er

    async def round_trip(bus, role):
        topic = bus.topic(f"greetings-{role}")
        got, totals = [], []
        topic >> got.append
        job = await (bus.from_topic(topic).key_by(str).reduce(lambda a, b: b)
                     .sink(totals.append).run())  # unnamed, and running beside the other's
        topic << f"hello from {role}"
        await topic.flush()
        for _ in range(600):
            if totals:
                break
            await asyncio.sleep(0.05)
        print("works", got, totals, flush=True)
        return topic, job

    async def main():
        role = sys.argv[1]
        bus = er.connect()
        await bus.__aenter__()
        topic, job = await round_trip(bus, role)
        await asyncio.to_thread(sys.stdin.readline)  # until the test says go on
        if role == "first":
            await bus.close()
            return
        started = time.monotonic()
        try:
            while time.monotonic() - started < 30:
                await topic.publish("still there?")
                await topic.flush()
                await asyncio.sleep(0.1)
            print("no error", flush=True)
        except er.TransportError as exc:
            print(f"lost after {time.monotonic() - started:.1f}s: {exc}", flush=True)
        for name, call in (("wait", job.wait), ("stop", job.stop)):
            try:
                await asyncio.wait_for(call(), 10)
                print(name, "ended cleanly", flush=True)
            except er.EventrayError as exc:  # the job's stages died with the cluster
                print(name, "raised", type(exc).__name__, flush=True)
        await asyncio.wait_for(bus.close(drain=False), 30)
        print("closed", flush=True)

    asyncio.run(main())
""")


@pytest.fixture
def machine_tmp() -> Iterator[Path]:
    """The machine's temp directory for these programs (Ray keeps its sessions and the
    address of the running local Ray there): short, as Ray's unix sockets need, and their
    own, so no other Ray on this machine is seen."""
    path = Path(tempfile.mkdtemp(prefix="er-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def plain_env(tmp: Path) -> dict[str, str]:
    """The environment of a user's program: no Ray or eventray variables."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("RAY_", "EVENTRAY_"))}
    env["TMPDIR"] = str(tmp)
    return env


def start(role: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PROGRAM, role], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(30)
        assert process.stderr is not None
        raise AssertionError(f"exited with {process.returncode}:\n"
                             f"{process.stderr.read()[-3000:]}")
    return line.strip()


def go_on(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def stop(process: subprocess.Popen[str]) -> str:
    """Wait (bounded) for ``process`` to end, killing it by PID if it does not; its stderr."""
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=30)
    return err


def test_two_programs_share_one_local_ray(machine_tmp: Path) -> None:
    env = plain_env(machine_tmp)
    first = start("first", env)
    second: subprocess.Popen[str] | None = None
    try:
        assert read_line(first) == "works ['hello from first'] ['hello from first']"
        second = start("second", env)
        assert read_line(second) == "works ['hello from second'] ['hello from second']"
        go_on(first)
        first_err = stop(first)
        assert first.returncode == 0, first_err[-3000:]
        assert "Token authentication" not in first_err, "no notice for a Ray eventray started"
        go_on(second)
        lost = read_line(second)
        assert lost.startswith("lost after"), lost
        assert "TransportError" in lost or "ray transport" in lost
        seconds = float(lost.split()[2].rstrip("s:"))
        assert seconds < 30, "an error, not a hang"
        assert read_line(second) in ("wait raised StageFailed", "wait raised TransportError")
        assert read_line(second) in ("stop raised StageFailed", "stop raised TransportError")
        assert read_line(second) == "closed"
        second_err = stop(second)
        assert second.returncode == 0, second_err[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate(timeout=30)


TIMEOUT_PROGRAM = textwrap.dedent("""
    import asyncio, os, socket, sys
    import eventray as er

    async def main():
        with socket.socket() as silent:  # accepts connections and never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            address = f"127.0.0.1:{silent.getsockname()[1]}"
            os.environ["RAY_ADDRESS"] = address
            try:
                await er.connect("ray", connect_timeout=2).__aenter__()
            except er.TransportError as exc:
                print(address in str(exc), "connect_timeout" in str(exc), flush=True)

    asyncio.run(main())
""")


def test_connect_gives_up_after_connect_timeout(machine_tmp: Path) -> None:
    env = plain_env(machine_tmp)
    listening = subprocess.Popen([sys.executable, "-c", TIMEOUT_PROGRAM], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    try:
        out, err = listening.communicate(timeout=60)
    finally:
        if listening.poll() is None:
            listening.kill()
            listening.communicate(timeout=30)
    assert out.strip() == "True True", err[-3000:]
    assert time.monotonic() - started < 45


BUSES = textwrap.dedent("""
    import asyncio, sys
    import ray
    import eventray as er

    async def main():
        a, b = er.connect(namespace="bus-a"), er.connect(namespace="bus-b")
        got = []
        a.topic("x") >> got.append
        b.topic("y") >> got.append
        # both open at once: one attaches this process to Ray, the other waits and shares it
        await asyncio.gather(a.topic("x").publish("a"), b.topic("y").publish("b"))
        await asyncio.gather(a.topic("x").flush(), b.topic("y").flush())
        await a.close()  # b still uses the Ray that a (or b) started
        await b.topic("y").publish("b again")
        await b.topic("y").flush()
        print(sorted(got), ray.is_initialized(), flush=True)
        await b.close()  # the last bus: it stops the Ray eventray started
        print(ray.is_initialized(), flush=True)

    asyncio.run(main())
""")


def test_buses_of_one_program_share_its_ray_until_the_last_closes(machine_tmp: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", BUSES], env=plain_env(machine_tmp),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]
    assert out.splitlines() == ["['a', 'b', 'b again'] True", "False"], err[-3000:]
