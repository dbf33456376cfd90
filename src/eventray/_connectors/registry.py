"""The plugin registry: connector kinds and transports found through entry points.

Plugins register connector classes under the ``eventray.connectors`` group (entry point name =
kind) and transport factories under ``eventray.transports`` (name = URL scheme). Nothing is
imported until a kind or transport is used; a plugin that fails to load raises a
``PluginError`` naming the plugin.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from eventray._model.errors import (
    ConfigError,
    MissingPluginError,
    PluginError,
    UnknownKindError,
)
from eventray._model.protocols import Sink, Source

from .base import Connector

log = logging.getLogger("eventray")

CONNECTORS_GROUP = "eventray.connectors"
TRANSPORTS_GROUP = "eventray.transports"
API_GROUP = "eventray.api"  # names a plugin adds to ``eventray`` (``er.JobClient``)
CLI_GROUP = "eventray.cli"  # functions adding a plugin's commands to the ``eventray`` CLI

# The plugin that supplies each first-party name of ``API_GROUP``.
_API_PLUGINS = {"JobClient": "rayjobs"}

# Where first-party kinds and transports come from, for the hint in "unknown kind" errors.
_FIRST_PARTY = {
    "ray": "ray",
    "kafka": "kafka",
    "http-source": "http",
    "webhook-source": "http",
    "http-sink": "http",
    "slack-sink": "http",
    "smtp-": "smtp",
    "satellite-": "satellite",
    "sms-": "sms",
    "file-": "files",
    "object-storage-": "files",
    "ray-job-": "rayjobs",
}


# The first-party plugins that exist, by folder in the eventray checkout.
_IN_CHECKOUT = {"ray": "transports/ray", "http": "connectors/http",
                "kafka": "connectors/kafka", "files": "connectors/files",
                "rayjobs": "connectors/rayjobs", "satellite": "connectors/satellite",
                "smtp": "connectors/smtp", "sms": "connectors/sms"}

INSTALL_FROM_CHECKOUT = "not on PyPI yet; from an eventray checkout: pip install ./{plugin}"


def install_hint(name: str) -> str | None:
    """How to get the first-party plugin that provides kind or transport ``name``, if any.

    The plugins are not published, so ``pip install "eventray[...]"`` cannot work: the hint
    says what does (installing the plugin's folder from a checkout of eventray).
    """
    plugin = next((plugin for prefix, plugin in _FIRST_PARTY.items()
                   if name == prefix or (prefix.endswith("-") and name.startswith(prefix))),
                  "kafka" if name.startswith("kafka-") else None)
    if plugin is None or _installed(f"eventray-{plugin}"):
        return None  # a misspelt kind of an installed plugin: the known kinds say enough
    if plugin not in _IN_CHECKOUT:
        return f"it comes with the eventray-{plugin} plugin, which is not released yet"
    return _plugin_hint(plugin)


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _plugin_hint(plugin: str) -> str:
    if plugin not in _IN_CHECKOUT:
        return f"eventray-{plugin} is not released yet"
    return f"eventray-{plugin} is " + INSTALL_FROM_CHECKOUT.format(plugin=_IN_CHECKOUT[plugin])


@dataclass(frozen=True)
class FieldInfo:
    """One config field of a connector kind, for listings."""

    name: str
    type: str
    required: bool
    default: Any
    aliases: tuple[str, ...]


@dataclass
class Plugin:
    """One entry point (or an object registered in-process, with ``entry_point`` None):
    what it is called, which distribution supplied it, how to load it."""

    name: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint | None
    _loaded: Any = field(default=None, repr=False)

    @property
    def origin(self) -> str:
        """Where it comes from: the entry point's ``module:attr`` or the registered object."""
        if self.entry_point is not None:
            return self.entry_point.value
        return f"{getattr(self._loaded, '__module__', '?')}:" \
               f"{getattr(self._loaded, '__qualname__', repr(self._loaded))}"

    def load(self) -> Any:
        if self._loaded is None and self.entry_point is not None:
            try:
                self._loaded = self.entry_point.load()
            except Exception as exc:
                raise PluginError(
                    f"failed to load: {type(exc).__name__}: {exc}",
                    plugin=self.distribution,
                    entry_point=self.origin,
                ) from exc
        return self._loaded


class Registry:
    """Installed connector kinds and transports, loaded lazily from entry points."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, Plugin]] = {}
        self._registered: dict[str, dict[str, Plugin]] = {}

    def refresh(self) -> None:
        """Forget what was discovered, so newly installed plugins are found (what was
        registered in-process stays)."""
        self._groups.clear()

    def register_connector(self, kind: str, cls: type[Connector[Any]]) -> None:
        """Make ``kind`` build ``cls`` in this process, as the ``eventray.connectors``
        entry point of an installed plugin would (and in its place, if both exist)."""
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"must be a non-empty string, got {kind!r}", field="kind")
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise ConfigError(f"must be a Connector subclass, got {cls!r}", kind=kind,
                              field="cls")
        if cls.kind != kind:
            raise ConfigError(f"{cls.__name__}.kind is {cls.kind!r}, registered as {kind!r}",
                              kind=kind, field="kind")
        self._register(CONNECTORS_GROUP, kind, cls)

    def register_transport(self, scheme: str, factory: Callable[..., Any]) -> None:
        """Make ``er.connect("<scheme>://...")`` use ``factory`` in this process, as the
        ``eventray.transports`` entry point of an installed plugin would."""
        if not isinstance(scheme, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            raise ConfigError(f"must be a URL scheme such as 'mine', got {scheme!r}",
                              field="scheme")
        if not callable(factory):
            raise ConfigError(f"must be callable, got {factory!r}", field="factory")
        self._register(TRANSPORTS_GROUP, scheme, factory)

    def _register(self, group: str, name: str, obj: Any) -> None:
        module = getattr(obj, "__module__", "") or ""
        plugin = Plugin(name, module.partition(".")[0] or "in-process", "", None, obj)
        self._registered.setdefault(group, {})[name] = plugin

    def _plugins(self, group: str) -> dict[str, Plugin]:
        if group not in self._groups:
            found: dict[str, Plugin] = {}
            for ep in metadata.entry_points(group=group):
                dist = ep.dist.name if ep.dist else "unknown"
                version = ep.dist.version if ep.dist else ""
                if ep.name in found and found[ep.name].distribution != dist:
                    log.warning(
                        "%s %r is provided by both %s and %s; using %s",
                        group, ep.name, found[ep.name].distribution, dist,
                        found[ep.name].distribution,
                    )
                    continue
                found[ep.name] = Plugin(ep.name, dist, version, ep)
            self._groups[group] = found
        return {**self._groups[group], **self._registered.get(group, {})}

    # connector kinds

    def kinds(self) -> dict[str, Plugin]:
        """Every installed connector kind and the plugin that supplies it."""
        return dict(sorted(self._plugins(CONNECTORS_GROUP).items()))

    def connector_class(self, kind: str) -> type[Connector[Any]]:
        """The connector class registered for ``kind``."""
        plugins = self._plugins(CONNECTORS_GROUP)
        if kind not in plugins:
            raise UnknownKindError("connector kind", kind, plugins, install_hint(kind))
        plugin = plugins[kind]
        cls = plugin.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise PluginError(
                "the entry point is not an eventray Connector class",
                plugin=plugin.distribution,
                entry_point=plugin.origin,
            )
        return cls

    def fields(self, kind: str) -> list[FieldInfo]:
        """The config fields of ``kind``, in declaration order."""
        config_type = self.connector_class(kind).config_type
        out = []
        for name, info in config_type.model_fields.items():
            alias = info.validation_alias
            aliases = tuple(
                choice
                for choice in getattr(alias, "choices", [alias] if alias else [])
                if isinstance(choice, str) and choice != name
            )
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            out.append(
                FieldInfo(name, type_name(info.annotation), info.is_required(), default, aliases)
            )
        return out

    def build(
        self, spec: object, *, role: Literal["source", "sink"] | None = None
    ) -> Source | Sink:
        """A connector from a ``{"kind": ...}`` mapping or an already built instance."""
        if isinstance(spec, Mapping):
            if "kind" not in spec:
                raise ConfigError("a connector config needs a 'kind'", field="kind")
            kind = spec["kind"]
            if not isinstance(kind, str):
                raise ConfigError(f"must be a string, got {kind!r}", field="kind")
            instance: Any = self.connector_class(kind)(spec)
        elif isinstance(spec, (Source, Sink)):
            instance = spec
        else:
            raise ConfigError(
                f"expected a {{'kind': ...}} dict or a connector, got {type(spec).__name__}"
            )
        if role == "source" and not isinstance(instance, Source):
            raise ConfigError(f"{_name(instance)} is not a source", kind=_kind(instance))
        if role == "sink" and not isinstance(instance, Sink):
            raise ConfigError(f"{_name(instance)} is not a sink", kind=_kind(instance))
        return instance  # type: ignore[no-any-return]

    # names added to ``eventray`` and commands added to its CLI

    def api(self, name: str) -> Any:
        """The object a plugin registered as ``eventray.<name>`` (group ``eventray.api``);
        a ``MissingPluginError`` when no installed plugin provides it."""
        plugins = self._plugins(API_GROUP)
        if name not in plugins:
            plugin = _API_PLUGINS.get(name)
            if plugin is None:
                raise AttributeError(f"module 'eventray' has no attribute {name!r}")
            raise MissingPluginError(name, plugin, _plugin_hint(plugin))
        return plugins[name].load()

    def api_names(self) -> list[str]:
        """The names installed plugins add to ``eventray``."""
        return sorted(self._plugins(API_GROUP))

    def cli_plugins(self) -> dict[str, Plugin]:
        """Installed CLI extensions: each loads to a function taking the ``eventray``
        parser's subcommands (``argparse``'s ``add_subparsers()`` result)."""
        return dict(sorted(self._plugins(CLI_GROUP).items()))

    # transports

    def transports(self) -> dict[str, Plugin]:
        """Every installed transport, by URL scheme."""
        return dict(sorted(self._plugins(TRANSPORTS_GROUP).items()))

    def transport_factory(self, scheme: str) -> Callable[..., Any]:
        """The factory registered for URL scheme ``scheme`` (it returns a ``Transport``)."""
        plugins = self._plugins(TRANSPORTS_GROUP)
        if scheme not in plugins:
            raise UnknownKindError("transport", scheme, plugins, install_hint(scheme))
        factory = plugins[scheme].load()
        if not callable(factory):
            plugin = plugins[scheme]
            raise PluginError(
                "the entry point is not callable",
                plugin=plugin.distribution,
                entry_point=plugin.origin,
            )
        return factory  # type: ignore[no-any-return]


def type_name(annotation: Any) -> str:
    """A short, readable name for a config field's type (``int``, ``'GET' | 'POST'``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is Annotated:
        return type_name(args[0])
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return str(getattr(annotation, "__name__", annotation))


def _kind(instance: object) -> str | None:
    kind = getattr(instance, "kind", None)
    return kind if isinstance(kind, str) and kind else None


def _name(instance: object) -> str:
    kind = _kind(instance)
    return repr(kind) if kind else type(instance).__name__


registry = Registry()


def connector(kind: str | Mapping[str, Any], /, **fields: Any) -> Source | Sink:
    """Build the connector registered as ``kind`` from keyword fields, or from a
    ``{"kind": ..., **fields}`` dict."""
    if isinstance(kind, Mapping):
        return registry.build({**kind, **fields})
    return registry.build({"kind": kind, **fields})
