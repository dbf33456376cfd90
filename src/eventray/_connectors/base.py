"""Connector configs and the base classes connectors subclass.

A connector is a class with a ``kind`` and a frozen ``ConnectorConfig`` subclass as its
``config_type``. ``HttpSource(url=..., period=3000)``, ``er.connector("http-source", ...)`` and
``{"kind": "http-source", ...}`` all validate through ``validate_config``, so a bad config fails
at construction with a ``ConfigError`` naming the kind and the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar

import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from eventray._model.errors import ConfigError
from eventray._model.event import Event


class ConnectorConfig(BaseModel):
    """Base of every connector config: frozen, keyword-only, unknown fields rejected.

    Values are checked strictly (``"3000"`` is not an ``int``). Declare a Rayvens-style alias
    with ``alias_field("webhookUrl")`` so old configs keep working.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        arbitrary_types_allowed=True,
    )


def alias_field(*aliases: str, default: Any = ..., description: str | None = None) -> Any:
    """A config field that also accepts the given older names (Rayvens aliases)."""
    return Field(
        default=default, validation_alias=AliasChoices(*aliases), description=description
    )


C = TypeVar("C", bound=ConnectorConfig)


def validate_config(
    config_type: type[C], kind: str, fields: Mapping[str, Any]
) -> C:
    """``config_type`` built from ``fields``, or a ``ConfigError`` naming kind and field."""
    try:
        return config_type.model_validate(dict(fields))
    except pydantic.ValidationError as exc:
        problems = exc.errors(include_url=False)
        names = {
            alias: name
            for name, info in config_type.model_fields.items()
            for alias in _aliases(info)
        }
        described = []
        for problem in problems:
            loc = problem["loc"]
            field = names.get(str(loc[0]), str(loc[0])) if loc else None
            message = problem["msg"]
            if problem["type"] == "extra_forbidden" and field is not None:
                given = str(loc[0])
                if given in config_type.model_fields or given in names:
                    spellings = sorted({field, *(a for a, n in names.items() if n == field)})
                    message = (f"given twice, as {' and '.join(map(repr, spellings))} (names "
                               "of one field); give it once")
                else:
                    message += _did_you_mean(field, [*config_type.model_fields, *names])
            described.append((field, message))
        field, message = described[0]
        if len(described) > 1:
            others = "; ".join(f"field '{f}': {m}" for f, m in described[1:])
            message = f"{message} (also {others})"
        raise ConfigError(message, kind=kind, field=field) from None


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _aliases(info: Any) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [alias] if isinstance(alias, str) else []


class Connector(Generic[C]):
    """Base of connectors built from a validated config.

    Subclasses set ``kind`` and ``config_type``; ``self.config`` is the validated config.
    """

    kind: ClassVar[str] = ""
    role: ClassVar[Literal["source", "sink"]]
    config_type: ClassVar[type[ConnectorConfig]] = ConnectorConfig

    def __init__(self, config: C | Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        if isinstance(config, ConnectorConfig):
            if fields:
                raise ConfigError("give a config object or fields, not both", kind=self.kind)
            if not isinstance(config, self.config_type):
                raise ConfigError(
                    f"expected {self.config_type.__name__}, got {type(config).__name__}",
                    kind=self.kind,
                )
            self.config: C = config
            return
        merged = {**(config or {}), **fields}
        merged.pop("kind", None)
        self.config = validate_config(self.config_type, self.kind, merged)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class BaseSource(Connector[C]):
    """A source with no-op lifecycle and position hooks; subclasses implement ``read``."""

    role: ClassVar[Literal["source", "sink"]] = "source"
    bounded: ClassVar[bool] = False  # True: read() returns None at some point (collect() ok)

    async def start(self) -> None:
        """Open connections; called once before the first ``read``."""

    async def read(self, max_events: int) -> Sequence[Event] | None:
        """At least one event (up to ``max_events``), an empty batch, or None at the end."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """The position to resume from."""
        return None

    def restore(self, state: Any) -> None:
        """Resume from a position ``snapshot`` returned."""

    async def commit(self, state: Any) -> None:
        """Acknowledge upstream everything up to a durable checkpoint's position."""

    async def stop(self) -> None:
        """Close connections; called once at the end."""


class BaseSink(Connector[C]):
    """A sink with no-op lifecycle hooks; subclasses implement ``write``."""

    role: ClassVar[Literal["source", "sink"]] = "sink"

    async def start(self) -> None:
        """Open connections; called once before the first ``write``."""

    async def write(self, batch: Sequence[Event]) -> None:
        """Deliver ``batch``; raising fails every event in it (they become dead letters)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Make everything written so far durable."""

    async def stop(self) -> None:
        """Close connections; called once at the end."""
