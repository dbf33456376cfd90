"""Ray actors, actor methods and remote functions as topic subscribers and operators."""

from __future__ import annotations

from typing import Any

from ray.actor import ActorHandle, ActorMethod
from ray.remote_function import RemoteFunction

from eventray import ConfigError, Event, Processor, Subscriber
from eventray.spi import Batch

from ._targets import (
    BatchCall,
    EventCalls,
    OutputCalls,
    RemoteFailure,
    Target,
    runs_in_order,
)

ACTOR_METHODS = ("ingest_batch", "ingest", "append")


class RemoteSubscriber(Subscriber):
    """A subscriber the topic actor calls directly, so events never pass through a driver."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name

    async def deliver(self, batch: list[Event]) -> list[tuple[Event, BaseException]]:
        failures = await self.target.deliver(Batch.from_events(batch))
        return [(batch[index], RemoteFailure(text)) for index, text in failures]


def _actor_name(handle: ActorHandle[Any]) -> str:
    cls = getattr(handle, "_ray_actor_creation_function_descriptor", None)
    name = getattr(cls, "class_name", None)
    return str(name) if name else "actor"


def subscriber_for(target: object, window: int) -> Subscriber | None:
    """The subscriber for a Ray actor (``ingest_batch``, else ``ingest``, else ``append``),
    an actor method, or a remote function; None for anything else."""
    if isinstance(target, ActorHandle):
        in_order = runs_in_order(target)
        for method in ACTOR_METHODS:
            if hasattr(target, method):
                name = f"{_actor_name(target)}.{method}"
                call = getattr(target, method)
                if method == "ingest_batch":
                    return RemoteSubscriber(BatchCall(call, name, in_order))
                return RemoteSubscriber(EventCalls(call, name, window if in_order else 1))
        raise ConfigError(
            f"a Ray actor subscriber needs an ingest_batch, ingest or append method; "
            f"{_actor_name(target)} has none (subscribe a method instead: topic >> actor.method)",
            field="subscriber",
        )
    if isinstance(target, ActorMethod):
        name = getattr(target, "_method_name", "method")
        in_order = runs_in_order(getattr(target, "_actor", None))
        return RemoteSubscriber(EventCalls(target, f"actor.{name}", window if in_order else 1))
    if isinstance(target, RemoteFunction):
        name = getattr(getattr(target, "_function", None), "__name__", "task")
        return RemoteSubscriber(EventCalls(target, f"task.{name}", window))
    return None


class ActorProcessor(Processor):
    """An operator topic's Ray actor: its ``ingest`` (or ``ingest_batch``) results are
    published, ``None`` dropped."""

    def __init__(self, calls: OutputCalls, name: str) -> None:
        self.calls = calls
        self.name = name

    async def process(self, batch: list[Event]) -> tuple[list[Event], list[tuple[Event, Any]]]:
        outputs, failed = await self.calls.call(batch)
        return outputs, [(event, RemoteFailure(text)) for event, text in failed]


def processor_for(target: object, window: int) -> Processor | None:
    """The operator for a Ray actor with ``ingest_batch`` or ``ingest``; None otherwise."""
    if not isinstance(target, ActorHandle):
        return None
    window = window if runs_in_order(target) else 1
    for method, batch in (("ingest_batch", True), ("ingest", False)):
        if hasattr(target, method):
            return ActorProcessor(OutputCalls(getattr(target, method), batch, window),
                                  f"{_actor_name(target)}.{method}")
    raise ConfigError(
        f"a Ray actor operator needs an ingest or ingest_batch method; "
        f"{_actor_name(target)} has neither",
        field="operator",
    )
