"""The checkpoint coordinator of a job: it asks the sources for checkpoint ``n`` every
``interval`` seconds, collects the part every stage instance acknowledges (an instance that
ended stands in with the state it ended with), writes them to the store and marks the
checkpoint complete, then tells the instances (sources commit their positions, senders let
go of what they kept for replay). One checkpoint is in flight at a time; one that is not
complete within ``timeout`` seconds is abandoned and the next one is taken.

On Ray the coordinator runs in the driver and the parts travel to it, so a directory store
on the driver's machine holds the checkpoints of every node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from eventray._model.errors import ConfigError, StageFailed
from eventray._model.event import describe

from .checkpoint_store import Checkpoint, CheckpointStore
from .context import Checkpoints

log = logging.getLogger("eventray")

JOB_PART = "_job"  # the part describing the job's shape, checked on resume


@dataclass
class CheckpointSettings:
    """How a job checkpoints: every ``interval`` seconds (None: only the final checkpoint of a
    drain), into ``store``; ``restored`` is the checkpoint the job resumes from; a job that
    starts fresh numbers its checkpoints from ``first_id`` (after those a store already has
    of the job, which a later resume would otherwise prefer)."""

    interval: float | None
    store: CheckpointStore
    restored: Checkpoint | None = None
    timeout: float = 600.0
    first_id: int = 1

    def restored_part(self, instance: str) -> bytes | None:
        """What ``instance`` wrote in the checkpoint the job resumes from."""
        if self.restored is None:
            return None
        return self.restored.parts.get(instance)


def job_shape(instances: list[str]) -> bytes:
    return json.dumps({"instances": instances}).encode()


def check_shape(checkpoint: Checkpoint, instances: list[str]) -> None:
    """Raise ``ConfigError`` if ``checkpoint`` was written by a job of another shape."""
    try:
        saved = json.loads(checkpoint.parts[JOB_PART])["instances"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"checkpoint {checkpoint.id} of job {checkpoint.job!r} does not say "
                          "which stages wrote it", field="resume") from exc
    if saved != instances:
        missing = sorted(set(instances) - set(saved)) or sorted(set(saved) - set(instances))
        raise ConfigError(
            f"checkpoint {checkpoint.id} of job {checkpoint.job!r} was written by other stages "
            f"(first difference: {missing[0] if missing else 'their order'}); resume needs "
            "the same stream and parallelism, or start without resume", field="resume")


Trigger = Callable[[int, bool], Awaitable[None]]
Notify = Callable[[int], Awaitable[None]]


class CheckpointCoordinator(Checkpoints):
    """Takes a job's checkpoints, one at a time."""

    def __init__(self, job: str, instances: list[str], settings: CheckpointSettings, *,
                 trigger: Trigger, notify: Notify) -> None:
        self.job = job
        self.instances = instances
        self.settings = settings
        self._trigger = trigger  # (id, final): ask the sources to take checkpoint id
        self._notify = notify  # (id): checkpoint id is durable
        restored = settings.restored
        self._next_id = max(settings.first_id, restored.id + 1 if restored is not None else 1)
        self._current: int | None = None
        self._current_final = False
        self._parts: dict[str, bytes] = {}
        self._ended: dict[str, bytes] = {}
        self._all_in = asyncio.Event()
        self._final_wanted = asyncio.Event()
        self._final_done: asyncio.Future[bool] | None = None
        self._closed = False  # run() returned
        self.final_error: Exception | None = None  # the final checkpoint could not be written
        self.last_id = restored.id if restored is not None else 0
        self.last_time = restored.created if restored is not None else 0.0
        self.last_seconds = 0.0
        self._last_parts = dict(restored.parts) if restored is not None else {}
        self._hurry = asyncio.Event()

    def part(self, instance: str) -> tuple[bytes | None, int]:
        """What ``instance`` wrote in the latest complete checkpoint (None: there is none,
        it starts afresh), and that checkpoint's id: where a restored instance resumes."""
        return self._last_parts.get(instance), self.last_id

    def in_flight(self) -> tuple[int, bool] | None:
        """The checkpoint being taken (its id, and whether it is the final one), if any: a
        source restored meanwhile is asked for it again."""
        if self._current is None:
            return None
        return self._current, self._current_final

    def hurry(self) -> None:
        """Take the next checkpoint now (a replay buffer is filling up)."""
        self._hurry.set()

    def metrics(self) -> dict[str, float]:
        return {"checkpoint_completed": self.last_id, "checkpoint_time": self.last_time,
                "checkpoint_seconds": round(self.last_seconds, 6)}

    async def acknowledge(self, instance: str, checkpoint_id: int, state: bytes) -> None:
        if checkpoint_id == self._current:
            self._parts[instance] = state
            self._check()

    async def finished(self, instance: str, state: bytes) -> None:
        self._ended[instance] = state
        self._check()
        if len(self._ended) == len(self.instances):
            self._final_wanted.set()  # the job ended: its end is the last checkpoint

    def _check(self) -> None:
        if self._current is not None and all(
            name in self._parts or name in self._ended for name in self.instances
        ):
            self._all_in.set()

    def raise_final_error(self) -> None:
        """Raise ``StageFailed`` if the final checkpoint could not be written."""
        if self.final_error is not None:
            raise StageFailed(f"{self.job}.checkpoints", "the final checkpoint could not be "
                              f"written: {describe(self.final_error)}",
                              job=self.job) from self.final_error

    async def final(self) -> bool:
        """Take the final checkpoint (the sources drain first, then take it); return whether
        it completed."""
        if self._closed:
            return False
        if self._final_done is None:
            self._final_done = asyncio.get_running_loop().create_future()
            self._final_wanted.set()
        return await asyncio.shield(self._final_done)

    async def run(self) -> None:
        """Take a checkpoint every interval, and the final one when asked (a drain) or once
        every instance ended (a bounded job: a resume then has nothing left to do); then
        return. The job's owner cancels this if the job fails."""
        try:
            while True:
                final = await self._next_request()
                completed = await self._take(final)
                if final:
                    if self._final_done is not None:
                        self._final_done.set_result(completed)
                    return
        finally:
            self._closed = True
            if self._final_done is not None and not self._final_done.done():
                self._final_done.set_result(False)

    async def _next_request(self) -> bool:
        """Whether the next checkpoint is the final one, once it is time for one."""
        interval = self.settings.interval
        wanted = asyncio.ensure_future(self._final_wanted.wait())
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({wanted, hurry}, timeout=interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            wanted.cancel()
            hurry.cancel()
        self._hurry.clear()
        return self._final_wanted.is_set()

    async def _take(self, final: bool) -> bool:
        checkpoint_id = self._next_id
        self._next_id += 1
        self._current = checkpoint_id
        self._current_final = final
        self._parts = {}
        self._all_in.clear()
        started = time.monotonic()
        self._check()  # every instance may have ended already
        await self._trigger(checkpoint_id, final)
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._all_in.wait()
        except TimeoutError:
            missing = [n for n in self.instances if n not in self._parts and n not in self._ended]
            log.warning("job %s: checkpoint %d abandoned after %.0fs; no part from %s",
                        self.job, checkpoint_id, self.settings.timeout, ", ".join(missing))
            self._current = None
            return False
        self._current = None
        try:
            await self._write(checkpoint_id)
        except Exception as exc:  # the store failed: the next checkpoint tries again
            log.error("job %s: checkpoint %d could not be written: %s", self.job,
                      checkpoint_id, describe(exc))
            if final:
                self.final_error = exc
            return False
        self.last_id, self.last_time = checkpoint_id, time.time()
        self.last_seconds = time.monotonic() - started
        await self._notify(checkpoint_id)
        return True

    async def _write(self, checkpoint_id: int) -> None:
        store = self.settings.store
        for name in self.instances:
            state = self._parts.get(name, self._ended.get(name))
            assert state is not None
            await store.write_part(self.job, checkpoint_id, name, state)
        await store.write_part(self.job, checkpoint_id, JOB_PART, job_shape(self.instances))
        await store.complete(self.job, checkpoint_id)
        self._last_parts = {name: self._parts.get(name, self._ended.get(name, b""))
                            for name in self.instances}
        try:
            await store.prune(self.job)
        except Exception as exc:  # an old checkpoint left behind is no loss
            log.warning("job %s: pruning old checkpoints failed: %s", self.job, exc)
