"""``StreamOp``, what the stage loop runs, and ``OpContext``, how an operator reports the
records it failed on (dead letter, skip or fail, by policy)."""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from typing import Any, Literal, cast

from eventray._model.batch import Batch
from eventray._model.errors import ConfigError, StageFailed
from eventray._model.event import DeadLetter, Event, describe

from .context import StageContext, StageMetrics

log = logging.getLogger("eventray")

ErrorPolicy = Literal["dead-letter", "skip", "fail"]
ERROR_POLICIES = ("dead-letter", "skip", "fail")


def check_policy(policy: str | None) -> ErrorPolicy | None:
    if policy is not None and policy not in ERROR_POLICIES:
        raise ConfigError(
            f"must be one of {', '.join(ERROR_POLICIES)}, got {policy!r}", field="on_error"
        )
    return cast(ErrorPolicy | None, policy)


class StreamOp(ABC):
    """One operator instance in a stage (each parallel instance has its own)."""

    kind = "op"
    keyed = False  # needs its input partitioned by key
    rekeys = False  # sets a new key (so what follows is no longer partitioned by it)
    stateful = False

    def __init__(self, name: str | None = None, on_error: str | None = None) -> None:
        self.name = name or self.kind
        self.on_error = check_policy(on_error)

    @abstractmethod
    async def run(self, batch: Batch, ctx: OpContext) -> Batch:
        """The batch to pass on."""

    async def finish(self, ctx: OpContext) -> Batch | None:
        """The input ended: return what is still held (open windows), if anything."""
        return None

    def advance(self, now: int, ctx: OpContext) -> Batch | None:
        """Processing time moved to ``now`` (ms): return what is due, if anything."""
        return None

    def next_deadline(self) -> int | None:
        """When (ms) ``advance`` next has something to do, for processing-time operators."""
        return None

    def topics(self) -> tuple[str, ...]:
        """The bus topics this operator publishes to (transports create them first)."""
        return ()

    async def prepare_checkpoint(self, ctx: OpContext) -> None:
        """A checkpoint is being taken: make what was written so far durable (sinks flush)."""

    def snapshot(self) -> Any:
        """State to checkpoint (stateful operators)."""
        return None

    async def close(self) -> None:
        """Release what the operator holds (connections); called once at the end."""

    def restore(self, state: Any) -> None:
        """Resume from a ``snapshot``."""

    def fresh(self) -> StreamOp:
        """A new instance with the same configuration and empty state."""
        return copy.copy(self)


class OpContext:
    """Handles the records an operator failed on, by the operator's or the stream's policy."""

    def __init__(self, job: str, stage: str, policy: str, ctx: StageContext,
                 metrics: StageMetrics) -> None:
        self.job = job
        self.stage = stage
        self.policy = policy
        self.ctx = ctx
        self.metrics = metrics

    async def fail(self, op: StreamOp, batch: Batch, failures: list[tuple[int, Exception]]) -> None:
        self.metrics.failed += len(failures)
        policy = op.on_error or self.policy
        where = f"{self.job}.{op.name}"
        if policy == "skip":
            return
        if policy == "fail":
            _, error = failures[0]
            raise StageFailed(self.stage, describe(error), job=self.job) from error
        index, error = failures[0]
        log.warning("%s failed on %d record(s), first %r: %s (sent to the dead-letter topic)",
                    where, len(failures), batch.values[index], describe(error))
        letters = [
            DeadLetter(batch.values[i], describe(error), where, batch.key_at(i), batch.ts_at(i))
            for i, error in failures
        ]
        await self.ctx.dead_letters(letters)

    async def publish(self, topic: str, events: list[Event]) -> None:
        await self.ctx.publish(topic, events)
