"""Names and commands plugins add to eventray, found through entry points only."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterator

import pytest

import eventray as er
from eventray import _cli
from eventray._connectors.registry import API_GROUP, CLI_GROUP, Plugin, Registry


@pytest.fixture
def bare_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """``er.registry`` seeing no installed ``eventray.api`` or ``eventray.cli`` plugin."""
    real = metadata.entry_points

    def entry_points(*, group: str) -> metadata.EntryPoints:
        return metadata.EntryPoints([]) if group in (API_GROUP, CLI_GROUP) else real(group=group)

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    er.registry.refresh()
    yield er.registry
    monkeypatch.undo()
    er.registry.refresh()


def test_a_missing_plugin_is_named_with_how_to_install_it(bare_registry: Registry) -> None:
    with pytest.raises(er.MissingPluginError, match=r"eventray-rayjobs plugin, which is not "
                       r"installed .*pip install \./connectors/rayjobs") as caught:
        er.JobClient  # noqa: B018
    assert isinstance(caught.value, ImportError)
    assert caught.value.plugin == "rayjobs"
    with pytest.raises(er.MissingPluginError):
        from eventray import JobClient  # noqa: F401
    assert not hasattr(er, "NoSuchName"), "other unknown names stay AttributeErrors"
    assert "JobClient" not in dir(er)


def test_a_broken_cli_plugin_leaves_the_other_commands_working(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = metadata.EntryPoint(name="broken", value="no_such_module:add", group=CLI_GROUP)
    monkeypatch.setattr(er.registry, "cli_plugins",
                        lambda: {"broken": Plugin("broken", "broken-dist", "1", broken)})
    assert _cli.main(["transports"]) == 0
    err = capsys.readouterr().err
    assert "the 'broken' command of broken-dist is unavailable" in err
    assert "no_such_module" in err


def test_a_cli_plugin_adds_its_commands(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def add(commands: object) -> None:
        hello = commands.add_parser("hello")  # type: ignore[attr-defined]
        hello.add_argument("name")
        hello.set_defaults(run=lambda args: print(f"hi {args.name}") or 7)

    plugin = Plugin("hello", "hello-dist", "1", None, add)
    monkeypatch.setattr(er.registry, "cli_plugins", lambda: {"hello": plugin})
    assert _cli.main(["hello", "you"]) == 7
    assert capsys.readouterr().out == "hi you\n"
