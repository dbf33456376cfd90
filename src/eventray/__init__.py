"""eventray: events for Ray programs, asyncio-first.

Topics to publish and subscribe, streams whose stages are checkpointed async polling loops,
and connectors selected by ``kind``; the same code runs in one process (``"memory"``) or on
Ray (the default). A Kafka transport is planned.
"""

import typing as _typing

from ._bus.bus import Bus
from ._bus.connect import connect
from ._connectors.base import BaseSink, BaseSource, Connector, ConnectorConfig, alias_field
from ._connectors.polling import PollingSource
from ._connectors.registry import connector, registry
from ._model.errors import (
    ClosedError,
    ConfigError,
    ConnectorError,
    EventrayError,
    MissingPluginError,
    OperatorError,
    PluginError,
    RejectedEvents,
    StageFailed,
    TopicFull,
    TransportError,
    UnknownKindError,
)
from ._model.event import DeadLetter, Event
from ._model.job_params import job_params
from ._model.protocols import Operator, Sink, Source
from ._operators.windows import Session, Sliding, Tumbling, WindowResult
from ._runtime.checkpoint_store import Checkpoint, CheckpointStore, DirectoryStore, MemoryStore
from ._runtime.plan import DEAD_LETTERS
from ._streams.job import Job
from ._streams.stream import Stream, WindowedStream
from ._topics.delivery import SubscriptionSpec
from ._topics.iteration import TopicIterator
from ._topics.protocols import TopicBackend, Transport
from ._topics.subscriber import Processor, Subscriber
from ._topics.topic import Subscription, Topic

__version__ = "0.1.0"

__all__ = [
    "DEAD_LETTERS",
    "BaseSink",
    "BaseSource",
    "Bus",
    "Checkpoint",
    "CheckpointStore",
    "ClosedError",
    "ConfigError",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "DeadLetter",
    "DirectoryStore",
    "Event",
    "EventrayError",
    "Job",
    "MemoryStore",
    "MissingPluginError",
    "Operator",
    "OperatorError",
    "PluginError",
    "PollingSource",
    "Processor",
    "RejectedEvents",
    "Session",
    "Sink",
    "Sliding",
    "Source",
    "StageFailed",
    "Stream",
    "Subscriber",
    "Subscription",
    "SubscriptionSpec",
    "Topic",
    "TopicBackend",
    "TopicFull",
    "TopicIterator",
    "Transport",
    "TransportError",
    "Tumbling",
    "UnknownKindError",
    "WindowResult",
    "WindowedStream",
    "__version__",
    "alias_field",
    "connect",
    "connector",
    "job_params",
    "registry",
]


def __getattr__(name: str) -> _typing.Any:
    """Names plugins add (``er.JobClient`` from eventray-rayjobs), found in the registry's
    ``eventray.api`` group on first use; a ``MissingPluginError`` names the plugin to
    install when it is not."""
    if name.startswith("__"):
        raise AttributeError(f"module 'eventray' has no attribute {name!r}")
    return registry.api(name)  # loaded once, kept by the registry


def __dir__() -> list[str]:
    return sorted({*globals(), *registry.api_names()})
