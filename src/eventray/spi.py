"""The plugin interface: what a transport or connector plugin may use besides ``eventray``.

Third-party transports and connectors (and eventray's own: ``eventray_ray``, ``eventray_http``)
import only ``eventray``, this module and ``eventray.testing``. Everything named in ``__all__``
is stable within a major ``SPI_VERSION``: a name may be added, and a method may gain a
keyword argument with a default, but nothing is removed or changes meaning without raising
``SPI_VERSION``. Anything else under ``eventray._*`` is private and may change in any release.

What a transport implements:
    ``Transport`` (hosts topics, runs jobs) and ``TopicBackend`` (one topic); subscribers
    arrive as ``SubscriptionSpec``s to feed with ``deliver_from``; a running stream is a
    ``JobBackend``.
What it uses to run a stream's stages:
    ``JobPlan``/``StagePlan`` (the stages, their operators and readers), ``StageRunner`` (the
    stage loop, the same on every transport) with a ``StageContext`` (how a stage reaches
    topics) and an ``Emitter`` (where its output goes: ``PartitioningEmitter`` cuts it per
    receiver), ``End`` and ``Barrier`` (the in-band end-of-input and checkpoint messages),
    ``AligningInbox`` (a stage's inbox: senders whose barrier is in wait for the checkpoint),
    ``CheckpointCoordinator``/``CheckpointSettings``/``Checkpoints`` (a job's checkpoints, and
    where stage instances report their parts), ``LocalJob`` (every stage as a task in this
    process), ``Batch``/``BatchChannel`` (what travels, and bounded queues of it) and
    ``TaskOwner`` (background tasks that ``aclose()`` cancels and awaits). A transport that
    keeps topics itself may swap a plan's ``TopicReader`` (``from_topic``) for a reader of
    its own, e.g. a ``ConnectorReader`` around a source connector.
What a connector uses:
    ``er.BaseSource``/``er.BaseSink``/``er.PollingSource`` and ``er.ConnectorConfig`` from
    ``eventray``, plus ``describe`` here to turn an exception into a dead letter's text, and
    ``HandoverQueue`` for a source that is a server (a webhook, an SMTP or SMS server): it
    answers a request only once the stream took its events, and refuses it otherwise.
"""

from ._model.batch import Batch, concat, split_by_key
from ._model.event import describe, now_ms
from ._runtime.alignment import AligningInbox
from ._runtime.channel import BatchChannel
from ._runtime.checkpoints import CheckpointCoordinator, CheckpointSettings
from ._runtime.context import (
    Barrier,
    Checkpoints,
    End,
    EventStream,
    Inbox,
    StageContext,
    StageMetrics,
)
from ._runtime.emitters import Emitter, NullEmitter, PartitioningEmitter
from ._runtime.handover import HandoverQueue
from ._runtime.local import JobBackend, LocalJob, Metrics
from ._runtime.operator import OpContext, StreamOp
from ._runtime.plan import DEAD_LETTERS, Exchange, JobPlan, StagePlan
from ._runtime.readers import ConnectorReader, Reader, TopicReader
from ._runtime.runner import StageRunner
from ._runtime.tasks import TaskOwner
from ._topics.delivery import SubscriptionSpec, deliver_from
from ._topics.protocols import TopicBackend, Transport
from ._topics.subscriber import Failures, Processor, Subscriber

SPI_VERSION = 1

__all__ = [
    "DEAD_LETTERS",
    "SPI_VERSION",
    "AligningInbox",
    "Barrier",
    "Batch",
    "BatchChannel",
    "CheckpointCoordinator",
    "CheckpointSettings",
    "Checkpoints",
    "ConnectorReader",
    "Emitter",
    "End",
    "EventStream",
    "Exchange",
    "Failures",
    "HandoverQueue",
    "Inbox",
    "JobBackend",
    "JobPlan",
    "LocalJob",
    "Metrics",
    "NullEmitter",
    "OpContext",
    "PartitioningEmitter",
    "Processor",
    "Reader",
    "StageContext",
    "StageMetrics",
    "StagePlan",
    "StageRunner",
    "StreamOp",
    "Subscriber",
    "SubscriptionSpec",
    "TaskOwner",
    "TopicBackend",
    "TopicReader",
    "Transport",
    "concat",
    "deliver_from",
    "describe",
    "now_ms",
    "split_by_key",
]
