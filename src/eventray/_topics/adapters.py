"""Adapters from what users pass (callables, topics, sinks, operators) to batch delivery."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from eventray._model.callables import describe_target, is_async_callable
from eventray._model.errors import Rejected, RejectedEvents
from eventray._model.event import Event, events_from
from eventray._model.protocols import Operator, Sink

from .subscriber import Failures, Processor, Subscriber

if TYPE_CHECKING:
    from .topic import Topic


class CallableSubscriber(Subscriber):
    """A plain function called with each value (or each event with ``events=True``)."""

    def __init__(self, fn: Callable[[Any], object], *, events: bool = False) -> None:
        self.fn = fn
        self.events = events
        self.name = describe_target(fn)

    async def deliver(self, batch: list[Event]) -> Failures:
        fn = self.fn
        failures: Failures = []
        for event in batch:
            try:
                fn(event if self.events else event.value)
            except Exception as exc:
                failures.append((event, exc))
        return failures


class AsyncCallableSubscriber(Subscriber):
    """An ``async def`` function awaited for each value, one at a time."""

    def __init__(self, fn: Callable[[Any], Awaitable[object]], *, events: bool = False) -> None:
        self.fn = fn
        self.events = events
        self.name = describe_target(fn)

    async def deliver(self, batch: list[Event]) -> Failures:
        fn = self.fn
        failures: Failures = []
        for event in batch:
            try:
                await fn(event if self.events else event.value)
            except Exception as exc:
                failures.append((event, exc))
        return failures


class TopicSubscriber(Subscriber):
    """Forwards every event, with its key and headers, to another topic."""

    def __init__(self, topic: Topic[Any]) -> None:
        self.topic = topic
        self.name = f"topic:{topic.name}"

    async def deliver(self, batch: list[Event]) -> Failures:
        await self.topic._ingest(batch)
        return []

    def downstream(self) -> Topic[Any]:
        return self.topic


class SinkSubscriber(Subscriber):
    """Writes batches to a ``Sink``; a failed write fails every event of the batch."""

    def __init__(self, sink: Sink, name: str | None = None) -> None:
        self.sink = sink
        self.name = name or f"sink:{getattr(sink, 'kind', describe_target(sink))}"

    async def open(self) -> None:
        await self.sink.start()

    async def close(self) -> None:
        await self.sink.stop()

    async def deliver(self, batch: list[Event]) -> Failures:
        try:
            await self.sink.write(batch)
        except RejectedEvents as rejected:
            return [(batch[index], Rejected(text)) for index, text in rejected.failures]
        except Exception as exc:
            return [(event, exc) for event in batch]
        return []

    async def flush(self) -> None:
        await self.sink.flush()


def _output(event: Event, result: object, out: list[Event]) -> None:
    if result is None:
        return
    out.append(result if isinstance(result, Event) else event.replace_value(result))


class CallableProcessor(Processor):
    """``fn(value) -> value``; ``None`` drops the event, an ``Event`` passes as it is."""

    def __init__(self, fn: Callable[[Any], object]) -> None:
        self.fn = fn
        self.name = describe_target(fn)

    async def process(self, batch: list[Event]) -> tuple[list[Event], Failures]:
        out: list[Event] = []
        failures: Failures = []
        for event in batch:
            try:
                _output(event, self.fn(event.value), out)
            except Exception as exc:
                failures.append((event, exc))
        return out, failures


class AsyncCallableProcessor(Processor):
    """``async fn(value) -> value``, awaited one event at a time to keep order."""

    def __init__(self, fn: Callable[[Any], Awaitable[object]]) -> None:
        self.fn = fn
        self.name = describe_target(fn)

    async def process(self, batch: list[Event]) -> tuple[list[Event], Failures]:
        out: list[Event] = []
        failures: Failures = []
        for event in batch:
            try:
                _output(event, await self.fn(event.value), out)
            except Exception as exc:
                failures.append((event, exc))
        return out, failures


class OperatorProcessor(Processor):
    """Any object following the ``Operator`` protocol; a raising batch fails as a whole."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.name = type(operator).__name__

    async def process(self, batch: list[Event]) -> tuple[list[Event], Failures]:
        try:
            result = self.operator.process(batch)
            if inspect.isawaitable(result):
                result = await result
            return events_from(result, self.name), []
        except Exception as exc:
            return [], [(event, exc) for event in batch]


class ProcessorSubscriber(Subscriber):
    """Runs a processor over a batch and publishes its output to a topic."""

    def __init__(self, processor: Processor, output: Topic[Any]) -> None:
        self.processor = processor
        self.output = output
        self.name = f"operator:{output.name}"

    async def deliver(self, batch: list[Event]) -> Failures:
        out, failures = await self.processor.process(batch)
        if out:
            await self.output._publish_events(out)
        return failures

    def downstream(self) -> Topic[Any]:
        return self.output


def processor_for(target: object) -> Processor | None:
    """The processor for an operator in the core kinds, or None."""
    if isinstance(target, Processor):
        return target
    if isinstance(target, Operator):
        return OperatorProcessor(target)
    if is_async_callable(target):
        return AsyncCallableProcessor(cast(Callable[[Any], Awaitable[object]], target))
    if callable(target):
        return CallableProcessor(target)
    return None
