"""``Job``: the handle of a running stream."""

from __future__ import annotations

from collections.abc import Callable

from eventray._runtime.local import JobBackend, Metrics


class Job:
    """A running stream: ``await wait()``, ``await stop(drain=True)``, ``metrics()``."""

    def __init__(self, name: str, backend: JobBackend,
                 on_end: Callable[[Job], None] = lambda job: None) -> None:
        self.name = name
        self._backend = backend
        self._on_end = on_end  # the bus stops tracking the job

    def __repr__(self) -> str:
        return f"<Job {self.name!r} {'done' if self.done else 'running'}>"

    @property
    def done(self) -> bool:
        return self._backend.done

    async def wait(self) -> None:
        """Wait until the stream ends; raises ``StageFailed`` naming the stage that failed."""
        try:
            await self._backend.wait()
        finally:
            if self._backend.done:
                self._on_end(self)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the stream. With ``drain``, sources stop taking new records and everything in
        flight reaches the sinks first; without, stages are cancelled at once."""
        try:
            await self._backend.stop(drain=drain)
        finally:
            if self._backend.done:  # a stop that was cancelled leaves the job running
                self._on_end(self)

    def metrics(self) -> Metrics:
        """Records in and out, batches, failures and seconds per stage instance."""
        return self._backend.metrics()
