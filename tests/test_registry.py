"""The plugin registry: entry-point discovery, config validation, aliases, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventray as er
from eventray._cli import main as cli
from eventray._connectors import registry as registry_module
from eventray._connectors.registry import install_hint
from eventray.testing import Recorder

from . import throwaway_plugin


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = throwaway_plugin.build(tmp_path)
    monkeypatch.syspath_prepend(str(root))
    er.registry.refresh()
    yield root
    sys.modules.pop("throwaway_connectors", None)
    er.registry.refresh()


def test_kinds_come_from_entry_points_with_their_distribution(plugin: Path) -> None:
    kinds = er.registry.kinds()
    assert kinds["countdown-source"].distribution == "throwaway-connectors"
    assert kinds["countdown-source"].version == "0.1.0"
    assert "throwaway_connectors" not in sys.modules, "plugins load only when used"
    source = er.connector("countdown-source", start=2)
    assert isinstance(source, er.Source) and source.kind == "countdown-source"


def test_config_dict_keywords_and_typed_class_are_equivalent(plugin: Path) -> None:
    by_dict = er.registry.build({"kind": "countdown-source", "start": 3})
    by_keywords = er.connector("countdown-source", start=3)
    cls = er.registry.connector_class("countdown-source")
    by_class = cls(start=3)
    configs = {repr(c.config) for c in (by_dict, by_keywords, by_class)}  # type: ignore[union-attr]
    assert len(configs) == 1


def test_rayvens_aliases_are_accepted(plugin: Path) -> None:
    source = er.connector("countdown-source", startFrom=5)
    assert source.config.start == 5  # type: ignore[union-attr]
    sink = er.registry.build({"kind": "shelf-sink", "shelfName": "a"})
    assert sink.config.shelf == "a"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({}, "start", "Field required"),
        ({"start": "3"}, "start", "valid integer"),
        ({"start": 3, "colour": "red"}, "colour", "Extra inputs"),
        ({"startFrom": 3, "label": 7}, "label", "valid string"),
    ],
)
def test_bad_configs_fail_naming_kind_and_field(
    plugin: Path, fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(er.ConfigError, match=message) as caught:
        er.connector("countdown-source", **fields)
    assert caught.value.kind == "countdown-source"
    assert caught.value.field == field
    assert f"countdown-source: field '{field}'" in str(caught.value)


def test_missing_field_reported_under_its_canonical_name(plugin: Path) -> None:
    with pytest.raises(er.ConfigError) as caught:
        er.connector("shelf-sink")
    assert caught.value.field == "shelf"


def test_unknown_kind_lists_installed_kinds(plugin: Path) -> None:
    with pytest.raises(er.UnknownKindError) as caught:
        er.connector("nope-source")
    assert "countdown-source" in str(caught.value) and "shelf-sink" in caught.value.installed


def test_config_without_kind_and_wrong_roles(plugin: Path) -> None:
    with pytest.raises(er.ConfigError, match="needs a 'kind'"):
        er.registry.build({"start": 1})
    with pytest.raises(er.ConfigError, match="'shelf-sink' is not a source"):
        er.registry.build({"kind": "shelf-sink", "shelf": "s"}, role="source")


def test_broken_plugin_error_names_the_plugin(plugin: Path) -> None:
    with pytest.raises(er.PluginError) as caught:
        er.connector("broken-sink")
    assert caught.value.plugin == "throwaway-connectors"
    assert "throwaway_connectors_missing:Nothing" in str(caught.value)


def test_unknown_transport_lists_installed_ones() -> None:
    with pytest.raises(er.UnknownKindError, match=r"installed: .*memory"):
        er.connect("carrier-pigeon://coop")
    with pytest.raises(er.ConfigError, match="memory"):
        er.connect("memory", no_such_option=1)


async def test_plugin_kinds_work_in_topics(plugin: Path) -> None:
    async with er.connect("memory") as bus:
        received = Recorder()
        numbers = bus.topic("countdown", source={"kind": "countdown-source", "startFrom": 3})
        shelved = bus.topic("shelved", sink={"kind": "shelf-sink", "shelf": "t"})
        numbers >> received
        numbers >> shelved
        assert await received.wait_for(3) == [{"n": 3}, {"n": 2}, {"n": 1}]
        await numbers.flush()
    shelves = sys.modules["throwaway_connectors"].SHELVES
    assert shelves["t"] == [{"n": 3}, {"n": 2}, {"n": 1}]


def test_cli_lists_kinds_with_plugin_and_fields(
    plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["connectors", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {row["kind"]: row for row in json.loads(out)}
    countdown = rows["countdown-source"]
    assert countdown["role"] == "source"
    assert countdown["plugin"] == "throwaway-connectors 0.1.0"
    assert countdown["fields"][0] == {
        "name": "start", "type": "int", "required": True, "default": None,
        "aliases": ["startFrom"],
    }
    assert countdown["fields"][1]["default"] == "n"
    assert "broken-sink" in err, "a kind that fails to load is reported, not hidden"
    assert cli(["connectors"]) == 0
    assert "shelf: str, required (alias shelfName)" in capsys.readouterr().out


def test_cli_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventray._cli", "transports"],
        capture_output=True, text=True, check=True,
    )
    assert any(line.startswith("memory  (from eventray ") for line in done.stdout.splitlines())


def test_version_lists_eventray_and_its_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(["--version"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"eventray {er.__version__}"
    assert any(line.strip().startswith("eventray-http ") for line in lines[1:])


def test_install_hints_say_what_works_from_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_installed", lambda distribution: False)
    assert install_hint("ray") == (
        "eventray-ray is not on PyPI yet; from an eventray checkout: pip install ./transports/ray"
    )
    assert "pip install ./connectors/smtp" in str(install_hint("smtp-source"))
    assert "./connectors/http" in str(install_hint("webhook-source"))


def test_a_misspelt_kind_of_an_installed_plugin_gets_no_install_hint() -> None:
    with pytest.raises(er.UnknownKindError) as failed:
        er.connector({"kind": "http-sorce", "url": "http://127.0.0.1:1/"})
    assert "did you mean 'http-source'" in str(failed.value)
    assert "pip install" not in str(failed.value)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by the test are forgotten after it."""
    monkeypatch.setattr(er.registry, "_registered", {})


@pytest.mark.usefixtures("in_process")
async def test_register_connector_and_transport_in_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eventray._memory import MemoryTransport
    from eventray.testing import ListSource

    class Numbers(ListSource):
        kind = "numbers-source"

    er.registry.register_connector("numbers-source", Numbers)
    er.registry.register_transport("local-mem", lambda url, **options: MemoryTransport(**options))
    assert er.registry.kinds()["numbers-source"].origin.endswith("Numbers")
    assert cli(["connectors"]) == 0
    assert "numbers-source  (source, from tests" in capsys.readouterr().out
    async with er.connect("local-mem") as bus:
        assert await bus.from_source({"kind": "numbers-source", "values": [1, 2]}).collect() == [
            1, 2
        ]
    with pytest.raises(er.ConfigError, match="kind is 'numbers-source'"):
        er.registry.register_connector("other-source", Numbers)
    with pytest.raises(er.ConfigError, match="Connector subclass"):
        er.registry.register_connector("x-source", dict)  # type: ignore[arg-type]
    with pytest.raises(er.ConfigError) as caught:
        er.registry.register_transport("no scheme", MemoryTransport)
    assert caught.value.field == "scheme"
