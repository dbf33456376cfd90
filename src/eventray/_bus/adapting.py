"""Turning what users subscribe or use as operators into subscribers and processors, with
errors that say what was expected (and that Ray objects need the Ray transport)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventray._connectors.registry import registry
from eventray._model.callables import is_async_callable
from eventray._model.errors import ConfigError
from eventray._model.protocols import Sink
from eventray._topics.adapters import (
    AsyncCallableSubscriber,
    CallableSubscriber,
    SinkSubscriber,
    TopicSubscriber,
    processor_for,
)
from eventray._topics.protocols import Transport
from eventray._topics.subscriber import Processor, Subscriber
from eventray._topics.topic import Topic


def known_subscriber(transport: Transport, target: object) -> tuple[Subscriber, object] | None:
    """A subscriber, topic, transport-specific kind, sink or sink config; else None."""
    if isinstance(target, Subscriber):
        return target, target
    if isinstance(target, Topic):
        return TopicSubscriber(target), target
    adapted = transport.adapt_subscriber(target)
    if adapted is not None:
        return adapted, target
    if isinstance(target, Mapping):
        sink: Any = registry.build(target, role="sink")
        return SinkSubscriber(sink), sink
    if isinstance(target, Sink):
        return SinkSubscriber(target), target
    return None


def callable_subscriber(transport: Transport, target: object, *, events: bool) -> Subscriber:
    """A sync or async callable as a subscriber; anything else is a ``ConfigError``."""
    if callable(target) and not _from_ray(target):
        if is_async_callable(target):
            return AsyncCallableSubscriber(target, events=events)
        return CallableSubscriber(target, events=events)
    raise ConfigError(
        f"cannot subscribe {_a(type(target).__name__)}: expected a callable, a topic, "
        "a sink or sink config, an operator, or a kind the transport accepts"
        + _ray_hint(transport, target),
        field="subscriber",
    )


def operator_for(transport: Transport, target: object) -> Processor:
    """The processor behind an operator topic."""
    adapted = transport.adapt_operator(target)
    if adapted is None and not _from_ray(target):
        adapted = processor_for(target)
    if adapted is None:
        raise ConfigError(
            f"cannot use {_a(type(target).__name__)} as an operator: expected a callable, "
            "an async callable, an Operator, or a kind the transport accepts"
            + _ray_hint(transport, target),
            field="operator",
        )
    return adapted


def _ray_hint(transport: Transport, target: object) -> str:
    if not _from_ray(target):
        return ""
    return (f"; Ray actors and tasks need the Ray transport (er.connect() or "
            f"er.connect(\"ray\")), and this bus uses {transport.name!r}")


def _from_ray(target: object) -> bool:
    """Whether ``target`` is a Ray object (an actor handle, a remote function or class)."""
    return any(cls.__module__.partition(".")[0] == "ray" for cls in type(target).__mro__)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "an ActorHandle", "a dict"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
