"""Bad or repeated configuration fails early, with an error that says what to do."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import eventray as er
from eventray.testing import ListSink, ListSource, Recorder

from . import throwaway_plugin


@pytest.fixture
async def bus() -> AsyncIterator[er.Bus]:
    async with er.connect("memory") as connected:
        yield connected


async def test_repeating_topic_with_the_same_sink_subscribes_it_once(bus: er.Bus) -> None:
    sink = ListSink()
    topic = bus.topic("orders", sink=sink)
    assert bus.topic("orders", sink=sink) is topic
    await topic.publish(1)
    await topic.flush()
    assert sink.values == [1]


async def test_repeating_topic_with_the_same_source_feeds_it_once(bus: er.Bus) -> None:
    source = ListSource(values=[1, 2, 3])
    received = Recorder()
    bus.topic("numbers", source=source) >> received
    bus.topic("numbers", source=source)
    assert await received.wait_for(3) == [1, 2, 3]
    await bus.topic("numbers").flush()
    assert received.values == [1, 2, 3]


async def test_a_different_sink_or_source_for_a_topic_is_a_config_error(bus: er.Bus) -> None:
    bus.topic("orders", sink=ListSink(), source=ListSource(values=[]))
    with pytest.raises(er.ConfigError, match="already has a sink") as caught:
        bus.topic("orders", sink=ListSink())
    assert caught.value.field == "sink"
    with pytest.raises(er.ConfigError, match="already has a source") as caught:
        bus.topic("orders", source=ListSource(values=[]))
    assert caught.value.field == "source"


async def test_collect_refuses_an_unbounded_connector_source(bus: er.Bus) -> None:
    class Forever(er.BaseSource[er.ConnectorConfig]):
        kind = "forever-source"

        async def read(self, max_events: int) -> list[er.Event]:
            return [er.Event(1)]

    with pytest.raises(er.ConfigError, match="collect\\(\\) needs a bounded stream") as caught:
        await bus.from_source(Forever()).collect()
    assert caught.value.field == "source"
    assert await bus.from_source(ListSource(values=[1, 2])).collect() == [1, 2]


@pytest.mark.parametrize(
    ("window", "field"),
    [
        (lambda: er.Tumbling(seconds=0.0001), "seconds"),
        (lambda: er.Sliding(seconds=1, every=0.0004), "every"),
        (lambda: er.Session(gap=1e-6), "gap"),
    ],
)
def test_a_window_length_that_rounds_to_0_ms_is_a_config_error(window: object, field: str) -> None:
    with pytest.raises(er.ConfigError, match="rounds to 0 ms") as caught:
        window()  # type: ignore[operator]
    assert caught.value.field == field


def test_a_misspelled_config_field_gets_a_hint(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(throwaway_plugin.build(tmp_path)))
    er.registry.refresh()
    try:
        with pytest.raises(er.ConfigError, match="did you mean 'label'\\?") as caught:
            er.connector("countdown-source", start=3, labl="x")
        assert caught.value.field == "labl"
        with pytest.raises(er.ConfigError, match="did you mean 'startFrom'\\?"):
            er.connector("countdown-source", startfrom=3)
        with pytest.raises(er.ConfigError) as caught:
            er.connector("countdown-source", start=3, zzz=1)
        assert "did you mean" not in str(caught.value)
        with pytest.raises(er.ConfigError, match="given twice") as caught:
            er.connector("countdown-source", start=3, startFrom=4)
        assert caught.value.field == "start"
        assert "'start'" in str(caught.value) and "'startFrom'" in str(caught.value)
    finally:
        sys.modules.pop("throwaway_connectors", None)
        er.registry.refresh()


async def test_ray_objects_on_another_transport_say_they_need_ray(bus: er.Bus) -> None:
    ray = pytest.importorskip("ray")

    @ray.remote
    class Comparator:
        def ingest(self, value: object) -> object:
            return value

    @ray.remote
    def task(value: object) -> None:
        pass

    for target in (Comparator, task):
        with pytest.raises(er.ConfigError, match=r'need the Ray transport .*er.connect\("ray"\)'):
            bus.topic("quotes") >> target
        with pytest.raises(er.ConfigError, match="Ray transport") as caught:
            bus.topic(f"op-{id(target)}", operator=target)
        assert caught.value.field == "operator"


@pytest.mark.usefixtures("ray_session")
async def test_an_actor_on_memory_says_it_needs_ray(bus: er.Bus) -> None:
    import ray

    @ray.remote
    class Comparator:
        def ingest(self, value: object) -> object:
            return value

    actor = Comparator.remote()  # type: ignore[attr-defined]
    with pytest.raises(er.ConfigError, match=r"cannot use an ActorHandle as an operator.*"
                                             r"need the Ray transport"):
        bus.topic("comparator", operator=actor)
    with pytest.raises(er.ConfigError, match=r"cannot subscribe an ActorHandle.*Ray transport"):
        bus.topic("quotes") >> actor
    ray.kill(actor)
