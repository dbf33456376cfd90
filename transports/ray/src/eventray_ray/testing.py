"""A real Ray head node for tests: ``ray start --head`` on 127.0.0.1, stopped by its PID.

::

    with RayHead.start(tmp_path) as head:
        ...  # er.connect(head.client_url) from a process that is not attached to Ray yet

It is the cluster eventray's own ``ray://`` tests use; the job-client tests start it with the
dashboard on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RayHead:
    """A running ``ray start --head --block`` process and where to reach it."""

    process: subprocess.Popen[str]
    gcs_port: int
    client_port: int
    dashboard_port: int | None
    temp_dir: Path
    env: dict[str, str]

    @property
    def address(self) -> str:
        """The GCS address, for ``RAY_ADDRESS`` or ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def client_url(self) -> str:
        """The Ray client URL, for ``er.connect``."""
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard_url(self) -> str | None:
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard_port else None

    @staticmethod
    def isolated_env(temp_dir: Path) -> dict[str, str]:
        """The environment of a process whose Ray (started or found) lives under
        ``temp_dir`` only, on 127.0.0.1: no other local cluster is seen."""
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_TMPDIR": str(temp_dir)}
        env.pop("RAY_ADDRESS", None)
        return env

    @classmethod
    def start(cls, temp_dir: Path, *, num_cpus: int = 1, dashboard: bool = False,
              timeout: float = 60.0) -> RayHead:
        """Start a head node whose every process binds to 127.0.0.1, its files under
        ``temp_dir``."""
        gcs, client = free_port(), free_port()
        dashboard_port = free_port() if dashboard else None
        env = cls.isolated_env(temp_dir)
        command = [
            os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
            f"--port={gcs}", f"--ray-client-server-port={client}",
            "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
            f"--temp-dir={temp_dir}", "--disable-usage-stats",
        ]
        if dashboard_port:
            command += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dashboard_port}"]
        else:
            command.append("--include-dashboard=false")
        temp_dir.mkdir(parents=True, exist_ok=True)
        log_path = temp_dir / "ray-start.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       text=True)
        head = cls(process, gcs, client, dashboard_port, temp_dir, env)
        try:
            _wait_for_port(client, process, timeout)
            if dashboard_port:
                _wait_for_port(dashboard_port, process, timeout)
        except BaseException as exc:
            head.stop()
            raise RuntimeError(f"{exc}; ray start said:\n{log_path.read_text()[-2000:]}") from exc
        return head

    def logs(self, pattern: str = "*.err", tail: int = 2000) -> str:
        """The end of each log file of the head's session matching ``pattern``, for
        diagnosing a failure."""
        parts = []
        for path in sorted(self.temp_dir.glob(f"session_latest/logs/{pattern}")):
            text = path.read_text(errors="replace")[-tail:].strip()
            if text:
                parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the head (``ray start --block`` stops what it started) by its PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> RayHead:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
