"""The ``eventray`` command line."""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import sys
from collections.abc import Sequence
from typing import Any

from ._connectors.registry import INSTALL_FROM_CHECKOUT, registry
from ._model.errors import EventrayError


def _connectors(as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for kind, plugin in registry.kinds().items():
        try:
            role = registry.connector_class(kind).role
            fields = registry.fields(kind)
        except EventrayError as exc:
            print(f"{kind}: {exc}", file=sys.stderr)
            continue
        rows.append(
            {
                "kind": kind,
                "role": role,
                "plugin": f"{plugin.distribution} {plugin.version}".strip(),
                "fields": [
                    {"name": f.name, "type": f.type, "required": f.required,
                     "default": _plain(f.default), "aliases": list(f.aliases)}
                    for f in fields
                ],
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        hint = INSTALL_FROM_CHECKOUT.format(plugin="connectors/http")
        print(f"no connector plugins installed (eventray-http is {hint})")
        return 0
    for row in rows:
        print(f"{row['kind']}  ({row['role']}, from {row['plugin']})")
        for field in row["fields"]:
            alias = f" (alias {', '.join(field['aliases'])})" if field["aliases"] else ""
            need = "required" if field["required"] else f"default {field['default']!r}"
            print(f"    {field['name']}: {field['type']}, {need}{alias}")
    return 0


def _plain(value: Any) -> Any:
    """``value`` if JSON can hold it, else its repr."""
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def _transports() -> int:
    for scheme, plugin in registry.transports().items():
        print(f"{scheme}  (from {plugin.distribution} {plugin.version})".rstrip())
    return 0


def _version() -> str:
    """eventray's installed version, then each installed plugin distribution's."""
    try:
        core = metadata.version("eventray")
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        core = "(not installed)"
    plugins = {plugin.distribution: plugin.version
               for found in (registry.transports(), registry.kinds())
               for plugin in found.values() if plugin.distribution != "eventray"}
    lines = [f"eventray {core}"]
    lines += [f"  {name} {version}".rstrip() for name, version in sorted(plugins.items())]
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(_version())
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventray`` command."""
    parser = argparse.ArgumentParser(prog="eventray", description="eventray command line")
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("connectors", help="list installed connector kinds")
    listing.add_argument("--json", action="store_true", help="print JSON")
    commands.add_parser("transports", help="list installed transports")
    _add_plugin_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "connectors":
        return _connectors(args.json)
    if args.command == "transports":
        return _transports()
    return int(args.run(args))


def _add_plugin_commands(commands: Any) -> None:
    """Commands of installed plugins (entry-point group ``eventray.cli``): each entry point
    is a function that adds its subcommands to ``commands`` and sets ``run`` (taking the
    parsed arguments, returning the exit code) on each with ``set_defaults``. A plugin that
    fails to load is reported on stderr; the other commands still work."""
    for name, plugin in registry.cli_plugins().items():
        try:
            plugin.load()(commands)
        except Exception as exc:
            print(f"eventray: the {name!r} command of {plugin.distribution} is unavailable: "
                  f"{exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
