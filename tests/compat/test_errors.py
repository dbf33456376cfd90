"""The compatibility layers in this process: clear errors for what eventray does not have,
and nothing left running once they are shut down."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import eventray as er
from eventray.compat import _runner
from eventray.compat import rayvens as rayvens
from eventray.compat.ray_streaming import StreamingContext
from eventray.testing import ListSink

pytestmark = pytest.mark.ray


def compat_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("eventray-compat")]


def eventray_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "eventray"}


@pytest.fixture
def compat(ray_session: None) -> Iterator[None]:
    """The facades on the session's Ray; shut down afterwards, leaving no thread and no
    actor behind."""
    before = eventray_actors()
    yield
    _runner.shutdown()
    assert compat_threads() == []
    assert eventray_actors() - before == set()


def test_operator_mode_is_a_clear_error() -> None:
    with pytest.raises(er.ConfigError, match="operator mode runs Camel-K integrations in "
                                             "Kubernetes") as caught:
        rayvens.init(mode="operator")
    assert caught.value.field == "mode"
    with pytest.raises(er.ConfigError, match="unsupported Rayvens mode 'cloud'"):
        rayvens.init(mode="cloud")
    assert _runner.current() is None  # nothing was started


def test_a_kind_eventray_lacks_is_named_with_those_it_has(compat: None) -> None:
    stream = rayvens.Stream("telegram")
    with pytest.raises(er.UnknownKindError, match=r"'telegram-sink'.*installed: .*slack-sink"):
        stream.add_sink(dict(kind="telegram-sink", authorizationToken="t", chatId="c"))
    with pytest.raises(er.UnknownKindError, match="'cos-source'"):
        rayvens.Client().create_topic("cos", source=dict(kind="cos-source", bucket="b"))
    with pytest.raises(er.ConfigError, match="is a dict with a 'kind'"):
        stream.add_source({"url": "http://127.0.0.1:1/"})
    with pytest.raises(er.ConfigError, match="slack-sink: field 'webhook_url'"):
        stream.add_sink(dict(kind="slack-sink", channel="#c"))  # Rayvens' name is accepted


def test_disconnecting_what_is_not_there_names_what_is(compat: None) -> None:
    stream = rayvens.Stream("names")
    with pytest.raises(er.ConfigError, match="has no source named 'http-source' "
                                             r"\(it has: none\)"):
        stream.disconnect_source("http-source")
    with pytest.raises(er.ConfigError, match=r"has no sink named 'slack' \(it has: none\)"):
        stream.disconnect_sink("slack")


def test_java_operators_are_a_clear_error(compat: None) -> None:
    ctx = StreamingContext.Builder().option("streaming.worker-num", 1).build()
    assert ctx.options == {"streaming.worker-num": 1}
    stream = ctx.from_values("a", "b", "c")
    with pytest.raises(NotImplementedError, match="Java operators are not available"):
        stream.as_java_stream()
    with pytest.raises(NotImplementedError, match=r"Java class name 'io\.ray\.Mapper1'"):
        stream.map("io.ray.Mapper1")
    with pytest.raises(er.ConfigError, match="the job has no sink"):
        ctx.submit("nothing")


def test_submit_runs_union_and_several_sinks_to_the_end(compat: None) -> None:
    ctx = StreamingContext.Builder().build()
    seen: list[object] = []
    evens = ctx.from_collection(range(0, 10, 2))
    odds = ctx.from_values(1, 3, 5).map(lambda x: x * 10)
    evens.union(odds).filter(lambda x: x != 4).sink(seen.append)
    ctx.from_values("x").sink(seen.append)
    ctx.submit("union")
    assert sorted(map(str, seen)) == sorted(map(str, [0, 2, 6, 8, 10, 30, 50, "x"]))


def test_a_handler_calling_back_into_the_facade(compat: None) -> None:
    client = rayvens.Client()
    source, echoes = client.create_topic("calls"), client.create_topic("echoes")
    got: list[object] = []
    echoes >> got.append
    errors: list[BaseException] = []

    def handler(event: object) -> None:
        echoes << f"echo {event}"  # publishing from a handler does not wait: allowed
        try:
            source.subscribe.remote(print)  # a call that would wait for the loop: refused
        except RuntimeError as exc:
            errors.append(exc)

    source >> handler
    source << 1
    _runner.shutdown()  # delivers what was published, then stops
    assert got == ["echo 1"]
    assert "cannot be called from a subscriber or operator" in str(errors[0])
    with pytest.raises(er.ClosedError, match="shut down"):
        source << 2


def test_disconnect_all_of_the_last_stream_stops_everything(compat: None) -> None:
    stream = rayvens.Stream("last", batch_size=3, operator=sum)
    totals: list[int] = []
    stream >> totals.append
    for i in range(7):
        stream << i
    assert compat_threads() == ["eventray-compat"]
    stream.disconnect_all()
    assert totals == [0 + 1 + 2, 3 + 4 + 5, 6]
    assert compat_threads() == [] and _runner.current() is None
    with pytest.raises(er.ClosedError, match="was disconnected"):
        stream << 8


class RecordingSink(ListSink):
    """A ``ListSink`` whose instances the test can find (the facade builds them from dicts)."""

    kind = "recording-sink"
    made: ClassVar[list[RecordingSink]] = []

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        RecordingSink.made.append(self)


def test_sinks_and_subscribers_by_name(compat: None) -> None:
    er.registry.register_connector("recording-sink", RecordingSink)
    RecordingSink.made.clear()
    stream = rayvens.Stream("sinks", sink_config=dict(kind="recording-sink", name="first"))
    assert stream.add_sink(dict(kind="recording-sink", route="/ignored")) == "recording-sink"
    with pytest.raises(er.ConfigError, match="already has a sink named 'first'"):
        stream.add_sink(dict(kind="recording-sink", name="first"))
    got: list[int] = []
    stream.send_to(got.append, name="fn")
    with pytest.raises(er.ConfigError, match="already has a subscriber named 'fn'"):
        stream.send_to(print, name="fn")
    stream << 1
    stream.disconnect_sink("first")  # after what was appended reached it
    first, second = RecordingSink.made
    assert first.values == [1] and first.stopped
    stream << 2
    stream.unsubscribe("fn")
    stream << 3
    stream.disconnect_all()
    assert second.values == [1, 2, 3] and second.stopped
    assert got == [1, 2]


def test_operators_of_every_kind(compat: None) -> None:
    import ray

    @ray.remote
    class Scaler:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def scale(self, value: int) -> int:
            return value * self.factor

    @ray.remote
    def negate(value: int) -> int:
        return -value

    scaler = Scaler.remote(10)
    rayvens.Client()  # keeps eventray's loop between the streams' disconnect_all
    results: dict[str, list[object]] = {}
    streams = []
    for name, operator in [("method", scaler.scale.remote), ("task", negate),
                           ("function", lambda v: v if v % 2 else None)]:
        stream = rayvens.Stream(f"op-{name}", operator=operator)
        results[name] = got = []
        stream >> got.append
        streams.append(stream)
    for stream in streams:
        stream << 1 << 2 << 3
    for stream in streams:
        stream.disconnect_all()
    assert results == {"method": [10, 20, 30], "task": [-1, -2, -3],
                       "function": [1, 3]}  # None is not passed on
    stream = rayvens.Stream("bad")
    with pytest.raises(TypeError, match="belongs to the driver process"):
        ray.put(stream)
    with pytest.raises(er.ConfigError, match="an operator is a callable"):
        stream.add_operator(42)
    with pytest.raises(er.ConfigError, match="a multitask operator is a Ray remote function"):
        stream.add_multitask_operator(scaler)
    with pytest.raises(er.ConfigError, match="batch_size"):
        rayvens.Stream("bad-batch", batch_size=0)


@pytest.mark.parametrize("module", ["rayvens", "ray_streaming"])
def test_without_ray_the_error_says_what_to_install(module: str) -> None:
    code = f"import sys; sys.modules['ray'] = None; import eventray.compat.{module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "ImportError: eventray.compat needs Ray and eventray's Ray transport: "
        "pip install eventray[ray]")


def test_at_exit_chained_streams_pass_on_what_they_hold(compat: None) -> None:
    got: list[object] = []
    words = rayvens.Stream("words", batch_size=2, operator=" ".join)
    pairs = rayvens.Stream("pairs", batch_size=2, operator=list)
    sink = rayvens.Stream("last")  # made last, fed last: the order of closing must not matter
    sink >> got.append
    words >> pairs >> sink
    words << "a" << "b" << "c" << "d" << "e"
    _runner.shutdown()  # what the program's end does
    assert got == [["a b", "c d"], ["e"]]  # the partial batches too, in order
