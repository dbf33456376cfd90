"""The exceptions eventray raises, all under one root.

::

    EventrayError
    ├── ConfigError (also ValueError)        a bad config, named by kind and field
    │   └── UnknownKindError                 a connector kind or transport nobody installed
    ├── PluginError                          a plugin's entry point failed to load
    ├── MissingPluginError (also ImportError) a feature's plugin is not installed
    ├── ClosedError                          the bus or topic was used after close()
    ├── TopicFull                            ``topic << value`` found no room
    ├── ConnectorError                       a connector failed talking to its service
    │   └── RejectedEvents                   a sink refused some events of a batch
    ├── OperatorError (also TypeError)       an operator returned something it must not
    ├── TransportError                       a transport failed (Ray, Kafka, ...)
    └── StageFailed                          a stream stage failed; carries the stage name

Errors carry the facts as attributes so callers can act on them without parsing messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EventrayError(Exception):
    """Root of every error eventray raises."""


class ConfigError(EventrayError, ValueError):
    """A configuration was rejected. ``kind`` and ``field`` say where, when known."""

    def __init__(self, message: str, *, kind: str | None = None, field: str | None = None):
        where = ": ".join(part for part in (kind, f"field '{field}'" if field else None) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.kind = kind
        self.field = field


class UnknownKindError(ConfigError):
    """No installed plugin provides this connector kind or transport."""

    def __init__(self, what: str, name: str, installed: Iterable[str], hint: str | None = None):
        names = sorted(installed)
        listing = ", ".join(names) if names else "none"
        message = f"unknown {what} {name!r}"
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; installed: {listing}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.kind = name
        self.installed = names


class PluginError(EventrayError):
    """A plugin's entry point could not be loaded."""

    def __init__(self, message: str, *, plugin: str, entry_point: str):
        super().__init__(f"plugin {plugin!r}, entry point {entry_point!r}: {message}")
        self.plugin = plugin
        self.entry_point = entry_point


class MissingPluginError(EventrayError, ImportError):
    """A name such as ``er.JobClient`` comes from a plugin that is not installed."""

    def __init__(self, name: str, plugin: str, hint: str | None = None) -> None:
        message = f"eventray.{name} comes with the eventray-{plugin} plugin, which is not " \
                  "installed"
        super().__init__(f"{message} ({hint})" if hint else message)
        self.name = name
        self.plugin = plugin


class ClosedError(EventrayError):
    """The bus, topic or subscription was used after it was closed."""


class TopicFull(EventrayError):
    """``topic << value`` found the topic's buffer full."""

    def __init__(self, topic: str, pending: int):
        super().__init__(
            f"topic {topic!r} already holds {pending} unsent events; "
            "use `await topic.publish(value)` to wait for room"
        )
        self.topic = topic
        self.pending = pending


class ConnectorError(EventrayError):
    """A connector failed; ``retriable`` says whether trying again may help."""

    def __init__(self, message: str, *, kind: str | None = None, retriable: bool = False):
        super().__init__(f"{kind}: {message}" if kind else message)
        self.kind = kind
        self.retriable = retriable


class RejectedEvents(ConnectorError):
    """Raised by ``Sink.write`` when only some events of the batch failed.

    ``failures`` pairs each failed event's index in the batch with its error text; only those
    events become dead letters, the rest of the batch counts as written.
    """

    def __init__(self, failures: list[tuple[int, str]], *, kind: str | None = None) -> None:
        first = failures[0][1] if failures else "no failures"
        super().__init__(f"{len(failures)} event(s) rejected, first: {first}", kind=kind)
        self.failures = failures


class OperatorError(EventrayError, TypeError):
    """An operator broke its contract (for example returned values where ``Event``s are
    expected); ``operator`` names it. The batch it was given becomes dead letters."""

    def __init__(self, message: str, *, operator: str) -> None:
        super().__init__(f"operator {operator!r}: {message}")
        self.operator = operator


class TransportError(EventrayError):
    """A transport failed."""

    def __init__(self, message: str, *, transport: str):
        super().__init__(f"{transport} transport: {message}")
        self.message = message
        self.transport = transport

    def __reduce__(self) -> tuple[object, ...]:  # crosses processes intact
        return (_transport_error, (type(self), self.message, self.transport))


class StageFailed(EventrayError):
    """A stream stage failed and the job stopped; ``stage`` names it."""

    def __init__(self, stage: str, error: str, job: str | None = None):
        super().__init__(f"stage {stage!r}{f' of job {job!r}' if job else ''} failed: {error}")
        self.stage = stage
        self.error = error
        self.job = job

    def __reduce__(self) -> tuple[object, ...]:  # crosses processes intact
        return (type(self), (self.stage, self.error, self.job))


class Rejected(Exception):
    """One event a sink rejected, with the sink's own description of why (a dead letter's
    cause, never raised to users)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _transport_error(cls: type[TransportError], message: str,
                     transport: str) -> TransportError:
    return cls(message, transport=transport)

