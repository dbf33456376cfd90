"""The curated public surface: a change to it must be deliberate."""

from __future__ import annotations

import pytest

import eventray as er

EXPECTED = {
    "Checkpoint", "CheckpointStore", "DirectoryStore", "MemoryStore",
    "DEAD_LETTERS", "BaseSink", "BaseSource", "Bus", "ClosedError", "ConfigError", "Connector",
    "ConnectorConfig", "ConnectorError", "DeadLetter", "Event", "EventrayError", "Operator",
    "OperatorError", "PluginError", "PollingSource", "Processor", "Sink", "Source", "StageFailed",
    "Subscriber",
    "Subscription", "SubscriptionSpec", "Topic", "TopicBackend", "TopicFull", "TopicIterator",
    "Transport", "TransportError", "UnknownKindError", "__version__", "alias_field", "connect",
    "connector", "registry", "Job", "Session", "Sliding", "Stream", "Tumbling", "WindowResult",
    "WindowedStream", "RejectedEvents", "MissingPluginError", "job_params",
}


def test_all_is_the_curated_surface() -> None:
    assert set(er.__all__) == EXPECTED
    assert len(er.__all__) == len(set(er.__all__))
    for name in er.__all__:
        assert hasattr(er, name), name


def test_public_names_are_all_exported() -> None:
    modules = ("testing", "spi", "compat")  # subpackages, once imported
    public = {name for name in vars(er) if not name.startswith("_") and name not in modules}
    assert public <= set(er.__all__), public - set(er.__all__)


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(er, n) for n in er.__all__ if n.endswith(("Error", "Failed", "Full"))]
    assert all(issubclass(e, er.EventrayError) for e in errors)
    assert issubclass(er.ConfigError, ValueError)


async def test_topic_full_when_buffer_is_full() -> None:
    bus = er.connect("memory", buffer_size=2)
    topic = bus.topic("tiny")
    topic << 1 << 2
    with pytest.raises(er.TopicFull) as full:
        topic << 3
    assert full.value.topic == "tiny"
    assert full.value.pending == 2
    await bus.close(drain=False)
