"""eventray: events for Ray programs, asyncio-first.

Topics to publish and subscribe, streams whose stages are checkpointed async polling loops,
and connectors selected by ``kind``; the same code runs in one process (``"memory"``), on Ray
(the default) or on Kafka.
"""

from ._adapters import Processor, Subscriber
from ._bus import DEAD_LETTERS, Bus, connect
from ._connector import BaseSink, BaseSource, Connector, ConnectorConfig, alias_field
from ._delivery import SubscriptionSpec
from ._errors import (
    ClosedError,
    ConfigError,
    ConnectorError,
    EventrayError,
    PluginError,
    RejectedEvents,
    StageFailed,
    TopicFull,
    TransportError,
    UnknownKindError,
)
from ._event import DeadLetter, Event
from ._iteration import TopicIterator
from ._job import Job
from ._polling import PollingSource
from ._protocols import Operator, Sink, Source, TopicBackend, Transport
from ._registry import connector, registry
from ._stream import Stream, WindowedStream
from ._topic import Subscription, Topic
from ._windows import Session, Sliding, Tumbling, WindowResult

__version__ = "0.1.0"

__all__ = [
    "DEAD_LETTERS",
    "BaseSink",
    "BaseSource",
    "Bus",
    "ClosedError",
    "ConfigError",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "DeadLetter",
    "Event",
    "EventrayError",
    "Job",
    "Operator",
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
    "registry",
]
