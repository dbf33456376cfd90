"""Rayvens on eventray: ``import eventray.compat.rayvens as rayvens`` and the rest of a Rayvens
program runs unchanged.

Both Rayvens APIs are here: the first one's ``Client``, ``create_topic``/``Topic``, ``>>``,
``<<`` and the actor-style ``topic.subscribe.remote(f)``/``topic.publish.remote(event)``, and
Rayvens 0.7's ``init`` and ``Stream`` (``add_source``, ``add_sink``, ``add_operator``,
``add_multitask_operator``, ``send_to``, ``disconnect_*``). Subscribers may be callables, Ray
remote functions, actor methods (``acc.add`` or ``acc.add.remote``) and actors (``ingest``,
``append`` or ``ingest_batch``). Connector configs keep Rayvens' ``kind`` and field names.

What differs: callables (subscribers and operators) run in this process, on eventray's event
loop, not inside a topic actor; Ray tasks and actors run where Ray puts them, as before.
Events published before the program ends are delivered before it exits. Calls wait for a
bounded time (``CALL_TIMEOUT`` seconds) and raise ``TimeoutError`` past it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import eventray as er

from ._ray import ray
from ._runner import CALL_TIMEOUT, CLOSE_TIMEOUT, Runner, current, runner, shutdown

MODES = ("auto", "local", "mixed", "operator")
TRANSPORTS = ("auto", "http", "kafka", "ray-serve")
# Rayvens config fields with no meaning on eventray: a connector's name on its stream, the HTTP
# route between Ray and its Camel process, and what Rayvens added itself.
RAYVENS_ONLY_FIELDS = ("name", "route", "integration_type")
RELAY_CAPACITY = 1000  # events multitask operators' tasks may have published, not yet taken
_DRIVER_ONLY = ("a rayvens {what} belongs to the driver process (on eventray it is not an "
                "actor) and cannot be sent to a Ray task or actor: return values to the "
                "driver, or publish from tasks with add_multitask_operator's context.publish")

__all__ = ["CALL_TIMEOUT", "Client", "Stream", "Topic", "init"]


def init(mode: str = os.getenv("RAYVENS_MODE", "auto"),
         transport: str = os.getenv("RAYVENS_TRANSPORT", "auto"),
         release: object = False, check_port: bool = True) -> None:
    """Start Rayvens: join the Ray this program initialised (or start one on 127.0.0.1).

    ``"auto"``, ``"local"`` and ``"mixed"`` all run connectors in this process; ``"operator"``
    (Camel-K integrations in Kubernetes) is not available. ``transport``, ``release`` and
    ``check_port`` are accepted and ignored: eventray moves events itself.
    """
    if mode == "operator":
        raise er.ConfigError(
            "Rayvens' operator mode runs Camel-K integrations in Kubernetes, which eventray "
            "does not use; use mode='local' or 'mixed' (connectors run in this process)",
            field="mode")
    if mode not in MODES:
        raise er.ConfigError(f"unsupported Rayvens mode {mode!r}; expected one of {MODES}",
                             field="mode")
    if transport not in TRANSPORTS:
        raise er.ConfigError(
            f"unsupported Rayvens transport {transport!r}; expected one of {TRANSPORTS}",
            field="transport")
    runner()


def connector_config(config: object, role: str) -> dict[str, Any]:
    """A Rayvens source or sink config as eventray takes it (Rayvens-only fields dropped)."""
    if not isinstance(config, Mapping) or "kind" not in config:
        raise er.ConfigError(f"a Rayvens {role} config is a dict with a 'kind', got {config!r}",
                             field=f"{role}_config")
    return {k: v for k, v in config.items() if k not in RAYVENS_ONLY_FIELDS}


def connector_name(config: Mapping[str, Any]) -> str:
    """Rayvens' name of a source or sink on its stream: its ``name``, else its ``kind``."""
    return str(config.get("name", config["kind"]))


def _remote_of(target: object) -> object:
    """``acc.add.remote`` or ``task.remote`` as the actor method or remote function."""
    owner = getattr(target, "__self__", None)
    if getattr(target, "__name__", None) == "remote" and isinstance(
        owner, (ray.actor.ActorMethod, ray.remote_function.RemoteFunction)
    ):
        return owner
    return target


def _subscriber(target: object) -> object:
    """What eventray subscribes for what a Rayvens program subscribes."""
    if isinstance(target, Topic):
        return target._core
    if isinstance(target, Stream):
        return target._input
    if isinstance(target, Mapping):
        return connector_config(target, "sink")
    return _remote_of(target)


def _on_loop(rt: Runner, what: str, fn: Callable[[], Any],
             timeout: float | None = CALL_TIMEOUT) -> Any:
    """``fn()`` run on the loop (eventray's objects belong to it)."""
    async def call() -> Any:
        result = fn()
        if inspect.isawaitable(result):
            result = await result
        return result

    return rt.call(call(), what, timeout)


class _RemoteCall:
    """``topic.publish.remote(event)``: Rayvens' topics were actors, called with ``.remote``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn

    def remote(self, arg: Any) -> Any:
        return self._fn(arg)

    def __call__(self, arg: Any) -> Any:
        return self._fn(arg)


class Topic:
    """A Rayvens topic: ``topic >> subscriber``, ``topic << event`` (chained), and
    ``topic.subscribe.remote(f)`` / ``topic.publish.remote(event)``."""

    def __init__(self, core: er.Topic[Any], rt: Runner) -> None:
        self._core = core
        self._runner = rt
        self.name = core.name

    def __repr__(self) -> str:
        return f"<rayvens Topic {self.name!r}>"

    def __reduce__(self) -> Any:
        raise TypeError(_DRIVER_ONLY.format(what=f"topic {self.name!r}"))

    @property
    def subscribe(self) -> _RemoteCall:
        return _RemoteCall(self._subscribe)

    @property
    def publish(self) -> _RemoteCall:
        return _RemoteCall(self._publish)

    def __lshift__(self, event: Any) -> Topic:
        self._publish(event)
        return self

    def __rshift__(self, subscriber: Any) -> Any:
        return self._subscribe(subscriber)

    def _publish(self, event: Any) -> None:
        if self._runner.on_loop():  # from a handler: enqueue without waiting
            self._core << event
            self._runner.published_on_loop += 1
            return
        self._runner.call(self._core.publish(event), f"publishing to topic {self.name!r}")

    def _subscribe(self, subscriber: Any) -> Any:
        target = _subscriber(subscriber)

        async def subscribe() -> object:
            subscription = self._core.subscribe(target)
            await subscription.ready()
            return subscription.target

        subscribed = self._runner.call(subscribe(), f"subscribing to topic {self.name!r}")
        if isinstance(subscriber, (Topic, Stream)):
            return subscriber
        if isinstance(subscribed, er.Topic):  # an operator got a topic of its own
            return Topic(subscribed, self._runner)
        return subscriber


_Topic = Topic


class Client:
    """Rayvens' first API: topics by name, with a source, a sink or an operator."""

    def __init__(self) -> None:
        self._runner = runner()
        self._runner.users += 1  # its topics stay until the program ends

    def create_topic(self, name: str, *, source: object = None, sink: object = None,
                     operator: object = None) -> _Topic:
        """The topic ``name``: fed by ``source``, feeding ``sink``, or publishing what
        ``operator`` (a callable or a Ray actor with ``ingest``) returns for each event."""
        bus = self._runner.bus
        source_cfg = None if source is None else connector_config(source, "source")
        sink_cfg = None if sink is None else connector_config(sink, "sink")
        op = None if operator is None else _remote_of(operator)
        core = _on_loop(self._runner, f"creating topic {name!r}",
                        lambda: bus.topic(name, source=source_cfg, sink=sink_cfg, operator=op))
        return _Topic(core, self._runner)

    Topic = create_topic


class _Relay:
    """Where a multitask operator's tasks publish (``context.publish``) from any worker; the
    stream takes what they published and passes it on. Bounded: a full relay holds them."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(capacity)

    async def publish(self, value: Any) -> None:
        await self._queue.put(value)

    async def take(self, most: int, wait: float) -> list[Any]:
        try:
            first = await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return []
        values = [first]
        while len(values) < most and not self._queue.empty():
            values.append(self._queue.get_nowait())
        return values


_RemoteRelay = ray.remote(num_cpus=0)(_Relay)


class OperatorContext:
    """The ``context`` a multitask operator gets: ``context.publish(event)`` sends ``event``
    on to the stream's subscribers and sinks, from whichever task calls it."""

    def __init__(self, relay: Any) -> None:
        self._relay = relay

    def publish(self, event: Any) -> None:
        if event is None:
            return
        ref = self._relay.publish.remote(event)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            ray.get(ref)  # a task waits while the relay is full
        # on an event loop (an operator run in the driver) the call goes on by itself


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_\-]+")


class Stream:
    """Rayvens 0.7's stream: events appended (``stream << event``) and read from sources go
    through an optional operator (on batches of ``batch_size`` events, if given) to the
    subscribers (``stream >> f``, ``send_to``) and sinks.
    """

    def __init__(self, name: str, actor_options: object = None, operator: object = None,
                 source_config: Mapping[str, Any] | None = None,
                 sink_config: Mapping[str, Any] | None = None,
                 batch_size: int | None = None) -> None:
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise er.ConfigError(f"must be a positive int or None, got {batch_size!r}",
                                 field="batch_size")
        self.name = name
        self._runner = rt = runner()
        self._batch_size = batch_size
        self._batch: list[Any] = []
        self._operator: object = None
        self._multitask = False
        self._sources: dict[str, er.Job] = {}
        self._sinks: dict[str, er.Subscription] = {}
        self._subscribers: dict[object, er.Subscription] = {}
        self._relay: Any = None
        self._relay_pump: asyncio.Task[None] | None = None
        self._relay_stopping = False
        self._last_activity = time.monotonic()
        self._events_out = 0
        self._closed = False
        if operator is not None:
            self._set_operator(operator, multitask=False)
        bus = rt.bus

        def open_topics() -> tuple[er.Topic[Any], er.Topic[Any], er.Subscription]:
            into = bus.topic(f"{name}.stream-in")
            out = bus.topic(name)
            stage = into.subscribe(self._stage, name=f"rayvens-stream:{name}")
            return into, out, stage

        topics: tuple[er.Topic[Any], er.Topic[Any], er.Subscription] = _on_loop(
            rt, f"creating stream {name!r}", open_topics)
        self._input, self._output, self._stage_subscription = topics
        rt.adopt(self)
        if sink_config is not None:
            self.add_sink(sink_config)
        if source_config is not None:
            self.add_source(source_config)

    def __repr__(self) -> str:
        return f"<rayvens Stream {self.name!r}>"

    def __reduce__(self) -> Any:
        raise TypeError(_DRIVER_ONLY.format(what=f"stream {self.name!r}"))

    # publishing and subscribing

    def append(self, data: Any) -> Stream:
        """Send ``data`` through the stream (``None`` is ignored, as in Rayvens)."""
        self._check_open()
        if data is None:
            return self
        if self._runner.on_loop():
            self._input << data
            self._runner.published_on_loop += 1
        else:
            self._runner.call(self._input.publish(data), f"appending to stream {self.name!r}")
        return self

    __lshift__ = append

    def send_to(self, subscriber: Any, name: str | None = None) -> Any:
        """Deliver what the stream emits to ``subscriber`` (a callable, a Ray task, actor or
        actor method, another stream or topic); returns ``subscriber``."""
        self._check_open()
        if name is not None and name in self._subscribers:
            raise er.ConfigError(f"stream {self.name!r} already has a subscriber named {name!r}",
                                 field="name")
        target = _subscriber(subscriber)

        async def subscribe() -> er.Subscription:
            subscription = self._output.subscribe(target)
            await subscription.ready()
            return subscription

        subscription = self._runner.call(subscribe(), f"subscribing to stream {self.name!r}")
        self._subscribers[name if name is not None else object()] = subscription
        return subscriber

    __rshift__ = send_to

    def unsubscribe(self, subscriber_name: str) -> None:
        """Stop delivering to the subscriber ``send_to`` named ``subscriber_name``, once what
        was appended so far reached it."""
        subscription = self._subscribers.pop(subscriber_name, None)
        if subscription is None:
            raise er.ConfigError(self._none_named("subscriber", subscriber_name,
                                                  [n for n in self._subscribers
                                                   if isinstance(n, str)]), field="name")
        async def unsubscribe() -> None:
            await self._settle()
            await subscription.cancel(drain=True)

        self._runner.call(unsubscribe(), f"unsubscribing {subscriber_name!r}")

    # operators

    def add_operator(self, operator: object, batch_size: int | None = None) -> None:
        """Apply ``operator`` (a callable, Ray remote function, actor method or actor) to each
        event, or each batch, and emit what it returns (``None``: nothing)."""
        self._set_operator(operator, multitask=False, batch_size=batch_size)

    def add_multitask_operator(self, operator: object, batch_size: int | None = None) -> None:
        """Call ``operator(context, event)`` (a Ray remote function, or a callable run here)
        for each event; it and the tasks it starts emit with ``context.publish(event)``."""
        self._set_operator(operator, multitask=True, batch_size=batch_size)

    def _set_operator(self, operator: object, *, multitask: bool,
                      batch_size: int | None = None) -> None:
        operator = _remote_of(operator)
        is_ray = isinstance(operator, (ray.actor.ActorHandle, ray.actor.ActorMethod,
                                       ray.remote_function.RemoteFunction))
        if multitask and isinstance(operator, (ray.actor.ActorHandle, ray.actor.ActorMethod)):
            raise er.ConfigError("a multitask operator is a Ray remote function or a callable "
                                 f"taking (context, event), got {operator!r}", field="operator")
        if not (is_ray or callable(operator)):
            raise er.ConfigError(f"an operator is a callable, a Ray remote function, actor "
                                 f"method or actor, got {operator!r}", field="operator")
        if batch_size is not None:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise er.ConfigError(f"must be a positive int or None, got {batch_size!r}",
                                     field="batch_size")
            self._batch_size = batch_size
        self._operator, self._multitask = operator, multitask

    async def _stage(self, value: Any) -> None:
        """Each event appended or read: batched if asked, through the operator, then out."""
        self._touch()
        if self._batch_size is not None:
            self._batch.append(value)
            if len(self._batch) < self._batch_size:
                return
            value, self._batch = self._batch, []
        await self._process(value)

    async def _process(self, data: Any) -> None:
        operator = self._operator
        if operator is None:
            await self._emit(data)
        elif self._multitask:
            context = OperatorContext(await self._open_relay())
            if isinstance(operator, ray.remote_function.RemoteFunction):
                await operator.remote(context, data)
            else:
                await _settle(operator(context, data))  # type: ignore[operator]
            self._touch()  # the tasks it started publish from now on
        else:
            await self._emit(await _apply(operator, data))

    async def _emit(self, value: Any) -> None:
        if value is None:
            return
        await self._output.publish(value)
        self._events_out += 1
        self._runner.published_on_loop += 1  # so the exit flush waits for what follows
        self._touch()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _open_relay(self) -> Any:
        if self._relay is None:
            self._relay = _RemoteRelay.remote(RELAY_CAPACITY)
            self._relay_pump = asyncio.create_task(self._pump_relay(self._relay),
                                                   name=f"rayvens-relay:{self.name}")
        return self._relay

    async def _pump_relay(self, relay: Any) -> None:
        """Pass on what multitask tasks published, until stopping finds the relay empty."""
        while True:
            values = await relay.take.remote(256, 0.2)
            for value in values:
                await self._emit(value)
            if not values and self._relay_stopping:
                return

    async def _close_relay(self) -> None:
        relay, pump = self._relay, self._relay_pump
        if relay is None or pump is None:
            return
        self._relay_stopping = True
        await pump  # ends once the relay is empty; a failed take raises here
        self._relay = self._relay_pump = None
        self._relay_stopping = False
        ray.kill(relay, no_restart=True)

    # sources and sinks

    def add_source(self, source_config: Mapping[str, Any]) -> str:
        """Feed the stream from a source connector; returns the source's name (its config's
        ``name``, else its ``kind``)."""
        self._check_open()
        config = connector_config(source_config, "source")
        name = connector_name(source_config)
        if name in self._sources:
            raise er.ConfigError(f"stream {self.name!r} already has a source named {name!r}",
                                 field="name")
        bus = self._runner.bus
        job_name = _SAFE_NAME.sub("-", f"rayvens-{self.name}-{name}").strip("-")[:100]
        self._sources[name] = _on_loop(
            self._runner, f"adding source {name!r} to stream {self.name!r}",
            lambda: bus.from_source(config).sink(self._input).run(job_name))
        return name

    def add_sink(self, sink_config: Mapping[str, Any]) -> str:
        """Deliver what the stream emits to a sink connector; returns the sink's name."""
        self._check_open()
        config = connector_config(sink_config, "sink")
        name = connector_name(sink_config)
        if name in self._sinks:
            raise er.ConfigError(f"stream {self.name!r} already has a sink named {name!r}",
                                 field="name")

        async def subscribe() -> er.Subscription:
            subscription = self._output.subscribe(config, name=f"sink:{name}")
            await subscription.ready()
            return subscription

        self._sinks[name] = self._runner.call(
            subscribe(), f"adding sink {name!r} to stream {self.name!r}")
        return name

    # disconnecting

    def disconnect_source(self, source_name: str, after_idle_for: float | None = None,
                          after: float | None = None) -> None:
        """Stop the source ``source_name`` (what it read is delivered), once the stream was
        idle for ``after_idle_for`` seconds and after ``after`` more."""
        self._wait(after_idle_for, after)
        _on_loop(self._runner, f"disconnecting source {source_name!r}",
                 lambda: self._stop_source(source_name), CLOSE_TIMEOUT * 2)

    def disconnect_sink(self, sink_name: str, after_idle_for: float | None = None,
                        after: float | None = None) -> None:
        """Detach the sink ``sink_name`` once what the stream emitted reached it."""
        self._wait(after_idle_for, after)
        _on_loop(self._runner, f"disconnecting sink {sink_name!r}",
                 lambda: self._stop_sink(sink_name), CLOSE_TIMEOUT * 2)

    def disconnect_all(self, after_idle_for: float | None = None, after: float | None = None,
                       stream_drain_timeout: float | None = None) -> None:
        """Once the stream was idle for ``after_idle_for`` seconds (and ``after`` more): stop
        the sources, pass on a partial batch, deliver everything to the subscribers and
        sinks, and detach them. When no other stream or client is left, eventray's loop and
        the actors it created stop too. ``stream_drain_timeout`` is accepted and ignored:
        the drain waits for the events themselves."""
        if self._closed:
            return
        self._wait(after_idle_for, after)
        rt = self._runner
        _on_loop(rt, f"disconnecting stream {self.name!r}", self.aclose, CLOSE_TIMEOUT * 4)
        rt.release(self)
        if rt is current() and not rt.parts and not rt.users:
            shutdown()

    def event_count(self) -> int:
        """How many events the stream emitted."""
        return self._events_out

    def _wait(self, after_idle_for: float | None, after: float | None) -> None:
        if after_idle_for is not None and after_idle_for > 0:
            _on_loop(self._runner, f"waiting for stream {self.name!r} to be idle",
                     lambda: self._idle_for(after_idle_for), None)
        if after is not None and after > 0:
            time.sleep(after)

    async def _idle_for(self, seconds: float) -> None:
        """Wait until everything appended was processed and nothing happened for ``seconds``
        (counted from this call at the earliest: a source just added may not have read yet;
        Rayvens, which counted from the last event, waited forever for a first one)."""
        self._touch()
        while True:
            await self._settle()
            idle = time.monotonic() - self._last_activity
            if idle >= seconds:
                return
            await asyncio.sleep(seconds - idle)

    async def _stop_source(self, name: str) -> None:
        job = self._sources.pop(name, None)
        if job is None:
            raise er.ConfigError(self._none_named("source", name, list(self._sources)),
                                 field="source_name")
        await job.stop(drain=True)

    async def _stop_sink(self, name: str) -> None:
        subscription = self._sinks.pop(name, None)
        if subscription is None:
            raise er.ConfigError(self._none_named("sink", name, list(self._sinks)),
                                 field="sink_name")
        await self._settle()
        await subscription.cancel(drain=True)

    async def _settle(self) -> None:
        """Wait until what was appended so far went through the stage and out."""
        await self._input.flush()
        await self._output.flush()

    async def stop_sources(self) -> None:
        """Stop every source (what they read is passed on)."""
        for name in list(self._sources):
            await self._stop_source(name)

    async def finish(self) -> None:
        """Pass on a partial batch and what multitask tasks published so far."""
        await self._input.flush()
        if self._batch:
            batch, self._batch = self._batch, []
            await self._process(batch)
        await self._close_relay()

    async def aclose(self) -> None:
        """Disconnect everything (``disconnect_all``, and at exit): stop the sources, pass
        on what is held back, deliver it all, detach the subscribers and sinks."""
        if self._closed:
            return
        self._closed = True
        await self.stop_sources()
        await self.finish()
        await self._output.flush()
        await self._stage_subscription.cancel(drain=True)
        for name in list(self._sinks):
            await self._sinks.pop(name).cancel(drain=True)
        for subscription in self._subscribers.values():
            await subscription.cancel(drain=True)
        self._subscribers.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise er.ClosedError(f"stream {self.name!r} was disconnected")

    def _none_named(self, role: str, name: object, names: list[str]) -> str:
        return (f"stream {self.name!r} has no {role} named {name!r} "
                f"(it has: {', '.join(map(repr, names)) or 'none'})")


async def _apply(operator: Any, data: Any) -> Any:
    """What ``operator`` returns for ``data``, Ray calls awaited."""
    if isinstance(operator, ray.actor.ActorHandle):
        for method in ("append", "ingest"):
            if hasattr(operator, method):
                return await getattr(operator, method).remote(data)
        raise er.ConfigError("a Ray actor operator needs an append or ingest method",
                             field="operator")
    if isinstance(operator, (ray.actor.ActorMethod, ray.remote_function.RemoteFunction)):
        return await operator.remote(data)
    return await _settle(operator(data))


async def _settle(result: Any) -> Any:
    """``result``, awaited if it is a Ray object reference or an awaitable."""
    if isinstance(result, ray.ObjectRef) or inspect.isawaitable(result):
        return await result
    return result
