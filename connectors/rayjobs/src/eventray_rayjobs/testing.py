"""A real Ray head with its job server on 127.0.0.1, for tests of job pipelines.

``RayJobCluster`` runs ``ray start --head --block`` with every port it opens chosen free, a
temp dir of its own (so it never meets another Ray on this machine, such as a test session's
``ray.init()``) and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (every Ray process binds to
127.0.0.1). It is ready once the job server answers ``/api/version``, and ``stop()`` ends the
``ray start`` process tree (job entrypoints included) and every process running from its
temp dir, by PID::

    @pytest.fixture(scope="session")
    def cluster() -> Iterator[RayJobCluster]:
        with RayJobCluster(num_cpus=1) as cluster:
            yield cluster

    async def test_job(cluster: RayJobCluster) -> None:
        async with er.JobClient(cluster.address, token=cluster.token) as jobs:
            ...

With ``token=...`` the cluster requires Ray's token authentication (``RAY_AUTH_MODE=token``):
requests without ``Authorization: Bearer <token>`` get 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["RayJobCluster", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_table() -> dict[int, tuple[int, int, bytes]]:
    """Every process: pid -> (parent pid, start time, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):  # dead, waiting for its parent to reap it
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[19]),
                                      (entry / "cmdline").read_bytes())
    return table


def _descendants(table: dict[int, tuple[int, int, bytes]], root: int) -> set[tuple[int, int]]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.add((pid, table[pid][1]))
        todo.extend(children.get(pid, []))
    return found


class RayJobCluster:
    """One Ray head (GCS, raylet, dashboard with the job server) on 127.0.0.1."""

    def __init__(self, *, num_cpus: int = 1, token: str | None = None,
                 startup_timeout: float = 120.0, env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        self.token = token
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.dashboard_port = 0
        self.gcs_port = 0
        self.temp_dir: str | None = None
        self._last_temp_dir: str | None = None  # kept after stop() for leftover_pids()
        self._known: set[tuple[int, int]] = set()  # (pid, start time) of its processes
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def address(self) -> str:
        """The job server's URL (what ``er.JobClient`` and ``--address`` take)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _command(self) -> list[str]:
        ray = Path(sys.executable).with_name("ray")
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        workers = free_port()
        ports = {
            "--port": self.gcs_port,
            "--dashboard-port": self.dashboard_port,
            "--node-manager-port": free_port(),
            "--object-manager-port": free_port(),
            "--ray-client-server-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--dashboard-agent-grpc-port": free_port(),
            "--runtime-env-agent-port": free_port(),
            "--metrics-export-port": free_port(),
            "--min-worker-port": workers,
            "--max-worker-port": workers + 50,
        }
        return [
            str(ray) if ray.exists() else "ray", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            "--include-dashboard=true", f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
            *(f"{flag}={port}" for flag, port in ports.items()),
        ]

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        # Jobs run `python ...` through a shell: this interpreter (with eventray) comes first.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(name, None)
        # Explicit either way: with the mode unset, Ray turns token auth on by itself when a
        # token file exists (~/.ray/auth_token, which any local ray.init() may have written).
        env["RAY_AUTH_MODE"] = "disabled" if self.token is None else "token"
        if self.token is not None:
            env["RAY_AUTH_TOKEN"] = self.token
        return env

    def start(self) -> RayJobCluster:
        """Start the head and wait until its job server answers (blocking)."""
        if self.process is not None:
            raise RuntimeError("the cluster is already started")
        self.temp_dir = self._last_temp_dir = tempfile.mkdtemp(prefix="erjobs-", dir="/tmp")
        self._log = Path(self.temp_dir) / "ray-start.log"
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                self._command(), env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n"
                                   f"{self.output()}")
            request = urllib.request.Request(f"{self.address}/api/version", headers=headers)
            with contextlib.suppress(OSError, ValueError), \
                    urllib.request.urlopen(request, timeout=2) as response:
                if "ray_version" in json.load(response):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray job server at {self.address} did not answer within"
                                   f" {self.startup_timeout}s:\n{self.output()}")
            time.sleep(0.25)

    def output(self) -> str:
        """What ``ray start`` printed so far."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-4000:]

    def leftover_pids(self) -> list[int]:
        """PIDs of this cluster's processes still running: the ``ray start`` process and its
        descendants (the job entrypoints among them) and anything running from its temp dir;
        none after ``stop()``."""
        table = _process_table()
        if self.process is not None:
            self._known |= _descendants(table, self.process.pid)
        temp_dir = self.temp_dir or self._last_temp_dir
        if temp_dir is not None:
            self._known |= {(pid, start) for pid, (_, start, cmdline) in table.items()
                            if temp_dir.encode() in cmdline and pid != os.getpid()}
        self._known = {(pid, start) for pid, start in self._known
                       if pid in table and table[pid][1] == start}
        return sorted(pid for pid, _ in self._known)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the head: SIGKILL to the ``ray start`` process group and to every process of
        its tree (job entrypoints run in groups of their own), as ``ray stop --force`` does;
        a gentler SIGTERM makes Ray restart what died. Waits up to ``timeout`` seconds for
        all of them to be gone."""
        process, self.process = self.process, None
        if process is not None:
            self.process = process
            self.leftover_pids()  # the whole tree, before anyone is reparented
            self.process = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + timeout
        while self.leftover_pids() and time.monotonic() < deadline:
            self._signal_leftovers(signal.SIGKILL)
            time.sleep(0.05)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def _signal_leftovers(self, signum: int) -> None:
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    async def astart(self) -> RayJobCluster:
        """``start()`` in a worker thread, for async fixtures."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> RayJobCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> RayJobCluster:
        return await self.astart()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.astop()
