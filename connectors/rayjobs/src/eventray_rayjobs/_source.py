"""``ray-job-source``: a Ray job's status changes and log lines as events, until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator

from eventray import BaseSource, ConnectorConfig, ConnectorError, Event, EventrayError
from eventray.spi import TaskOwner

from ._client import Job, JobClient, resolve_address
from ._info import JobInfo

_END = object()
_WAKE = object()  # stop_reading wakes a waiting read


class RayJobSourceConfig(ConnectorConfig):
    """``ray-job-source``: follow job ``submission_id`` on the job server at ``address``
    (default as for ``JobClient``: ``$EVENTRAY_JOBS_ADDRESS``, an http ``$RAY_ADDRESS``, or
    ``http://127.0.0.1:8265``)."""

    submission_id: Annotated[str, Field(min_length=1)]
    address: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    token: str | None = Field(default=None, repr=False)
    verify: bool = True
    poll_interval: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    max_pending: Annotated[int, Field(gt=0)] = 1000

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return resolve_address(value)
        except EventrayError as exc:  # a ConfigError; pydantic wants a ValueError
            raise ValueError(str(exc).removeprefix("field 'address': ")) from None


class RayJobSource(BaseSource[RayJobSourceConfig]):
    """The events of one Ray job, keyed by its submission id:
    ``{"type": "status", "submission_id", "status", "message"}`` when its status changes
    (the terminal status is the last event) and ``{"type": "log", "submission_id", "line"}``
    per log line. It ends when the job ends. Its position (log lines and status delivered)
    is checkpointed: a restored source skips what it delivered already."""

    kind = "ray-job-source"
    config_type = RayJobSourceConfig
    bounded = True

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._client: JobClient | None = None
        self._queue: asyncio.Queue[Any] | None = None  # made by start(), in its event loop
        self._tasks: TaskOwner | None = None
        self._lines = 0  # log lines delivered by read()
        self._status: str | None = None  # last status delivered by read()
        self._ended = False
        self._stopping = False
        self._failure: BaseException | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        config = self.config
        self._queue = asyncio.Queue(config.max_pending)
        self._tasks = TaskOwner(f"ray-job-source {config.submission_id}")
        self._client = JobClient(config.address, headers=config.headers, token=config.token,
                                 verify=config.verify)
        job = self._client.job(config.submission_id)
        try:
            info = await job.info()  # an unknown job or an unreachable server fails here
        except EventrayError as exc:
            await self._client.close()
            self._client = None
            raise ConnectorError(str(exc), kind=self.kind) from exc
        self._tasks.spawn(self._follow(job, info, self._lines, self._status), name="follow")

    def _event(self, value: dict[str, Any]) -> Event:
        return Event({**value, "submission_id": self.config.submission_id},
                     key=self.config.submission_id)

    def _status_event(self, info: JobInfo) -> Event:
        return self._event({"type": "status", "status": info.status.value,
                            "message": info.message})

    async def _follow(self, job: Job, info: JobInfo, skip_lines: int,
                      last_status: str | None) -> None:
        assert self._queue is not None and self._tasks is not None
        try:
            logs = self._tasks.spawn(self._pump_logs(job, skip_lines), name="logs")
            while True:
                if info.status.terminal:
                    await logs  # every log line before the final status
                    if info.status.value != last_status:
                        await self._queue.put(self._status_event(info))
                    await self._queue.put(_END)
                    return
                if info.status.value != last_status:
                    last_status = info.status.value
                    await self._queue.put(self._status_event(info))
                await asyncio.sleep(self.config.poll_interval)
                if logs.done():
                    logs.result()  # the log follower's error, if it had one
                info = await job.info()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._queue.put(exc)

    async def _pump_logs(self, job: Job, skip: int) -> None:
        assert self._queue is not None
        index = 0
        async for line in job.logs(follow=True, poll_interval=self.config.poll_interval):
            index += 1
            if index > skip:
                await self._queue.put(self._event({"type": "log", "line": line}))

    def stop_reading(self) -> None:
        """A drain: a read waiting for the job returns what is queued; later reads return
        what is left, then None (a resumed job goes on from the lines delivered)."""
        self._stopping = True
        if self._queue is not None:
            try:
                self._queue.put_nowait(_WAKE)
            except asyncio.QueueFull:
                pass  # a full queue does not make a read wait

    async def read(self, max_events: int) -> Sequence[Event] | None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise ConnectorError(f"following job {self.config.submission_id!r} failed: "
                                 f"{failure}", kind=self.kind) from failure
        if self._ended or (self._stopping and (self._queue is None or self._queue.empty())):
            return None
        await self.start()
        assert self._queue is not None
        batch: list[Event] = []
        item = await self._queue.get()
        while True:
            if item is _WAKE:
                if self._queue.empty():
                    break
                item = self._queue.get_nowait()
                continue
            if item is _END or isinstance(item, BaseException):
                self._ended = True
                if isinstance(item, BaseException):
                    self._failure = item  # raised by this read, or the next one
                break
            batch.append(item)
            value = item.value
            if value["type"] == "log":
                self._lines += 1
            else:
                self._status = value["status"]
            if len(batch) >= max_events or self._queue.empty():
                break
            item = self._queue.get_nowait()
        if not batch and self._failure is not None:
            return await self.read(max_events)
        if not batch and self._stopping:
            return None
        return batch if batch or not self._ended else None

    def snapshot(self) -> dict[str, Any]:
        return {"lines": self._lines, "status": self._status}

    def restore(self, state: Any) -> None:
        if self._client is not None:
            raise RuntimeError("restore() must come before start()")
        self._lines = int(state["lines"])
        self._status = state["status"]

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.aclose()
        if self._client is not None:
            await self._client.close()
