"""``er.connect``: a bus on the transport a URL names."""

from __future__ import annotations

import os
from typing import Any

from eventray._connectors.registry import registry
from eventray._model.errors import ConfigError
from eventray._topics.protocols import Transport

from .bus import Bus


def connect(
    url: str | None = None,
    /,
    *,
    buffer_size: int | None = None,
    max_batch: int | None = None,
    close_timeout: float = 30.0,
    **options: Any,
) -> Bus:
    """Connect to a transport: ``"memory"``, ``"ray"`` (the default), ``"ray://host:10001"``,
    or any scheme a plugin registers (``"kafka://host:9092"`` once that plugin exists).

    ``EVENTRAY_URL`` overrides the default. Other keyword ``options`` go to the transport.
    """
    chosen = url or os.environ.get("EVENTRAY_URL") or "ray"
    if not isinstance(chosen, str):
        raise ConfigError(f"expected a URL string, got {chosen!r}", field="url")
    scheme = chosen.split("://", 1)[0]
    factory = registry.transport_factory(scheme)
    try:
        transport = factory(chosen, **options)
    except TypeError as exc:
        raise ConfigError(f"bad transport options: {exc}", kind=scheme) from exc
    if not isinstance(transport, Transport):
        raise ConfigError(
            f"the {scheme!r} transport plugin returned a {type(transport).__name__}, which "
            "lacks what eventray.spi.Transport requires", kind=scheme,
        )
    return Bus(
        transport, buffer_size=buffer_size, max_batch=max_batch, close_timeout=close_timeout
    )
