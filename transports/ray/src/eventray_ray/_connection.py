"""Joining or starting Ray, and knowing which of the two we did."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from eventray import ConfigError

log = logging.getLogger("eventray")

LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayOptions:
    """How to reach Ray and how to place eventray's actors on it."""

    address: str | None = None  # "ray://host:port" for a Ray client; None: local or RAY_ADDRESS
    namespace: str = "eventray"
    num_cpus: int | None = None  # for a Ray that eventray starts
    stage_num_cpus: float = 0.05  # per stage actor, fractional so small machines run many
    runtime_env: dict[str, Any] | None = field(default=None)
    queue_size: int = 1000  # events queued per local subscriber of this process
    queue_batches: int = 4  # batches queued per subscriber inside a topic actor
    credits: int = 4  # batches in flight per channel between stages
    event_window: int = 64  # per-event calls in flight to an in-order actor subscriber

    def __post_init__(self) -> None:
        for name in ("queue_size", "queue_batches", "credits", "event_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive int, got {value!r}", kind="ray",
                                  field=name)
        if not isinstance(self.stage_num_cpus, (int, float)) or self.stage_num_cpus < 0:
            raise ConfigError(f"must be a non-negative number, got {self.stage_num_cpus!r}",
                              kind="ray", field="stage_num_cpus")
        if not self.namespace or not isinstance(self.namespace, str):
            raise ConfigError("must be a non-empty string", kind="ray", field="namespace")


class _NoSignalWarning(logging.Filter):
    """eventray starts Ray from a worker thread so the event loop never blocks; Ray then warns
    that it could not install its SIGTERM handler, which eventray does not need (closing the
    bus shuts down a Ray it started)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def parse_url(url: str) -> str | None:
    """The Ray address in an ``er.connect`` URL: None for ``"ray"``, the URL for ``ray://``."""
    if url.rstrip("/") in ("ray", "ray:"):
        return None
    if url.startswith("ray://") and len(url) > len("ray://"):
        return url
    raise ConfigError(f"expected 'ray' or 'ray://host:port', got {url!r}", kind="ray",
                      field="url")


def connect(options: RayOptions) -> bool:
    """Make sure this process is attached to Ray; return True if this call attached it.

    An already initialised Ray is used as it is (and left alone on close); otherwise
    ``options.address`` (a Ray client URL), then ``RAY_ADDRESS``, then a running local cluster
    is joined, and failing all of those a local Ray is started with every process on
    127.0.0.1. Whatever this call attached, ``ray.shutdown()`` detaches again: that stops a
    Ray started here and only disconnects from one that was joined.
    """
    if ray.is_initialized():
        return False
    for name in ("ray", "ray._private.worker"):
        logging.getLogger(name).addFilter(_NoSignalWarning())
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "runtime_env": options.runtime_env}
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("ray://"):
        _use_local_token()
        _init_client(address, quiet)
        return True
    if address:
        ray.init(address=address, **quiet)
        return True
    try:
        ray.init(address="auto", **quiet)
        return True
    except ConnectionError:
        pass
    start_local(options.num_cpus, quiet)
    return True


CLIENT_ATTEMPTS = 3


def _init_client(address: str, init_options: dict[str, Any]) -> None:
    """Connect as a Ray client, trying ``CLIENT_ATTEMPTS`` times: the cluster starts a server
    process per client, and on a loaded machine that start-up sometimes fails
    (``ConnectionAbortedError: Initialization failure from server``) and works when asked
    again."""
    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address=address, **init_options)
            return
        except ConnectionError as exc:  # ConnectionAbortedError is one
            if attempt == CLIENT_ATTEMPTS:
                raise
            log.warning("Ray client connection to %s failed (%s); trying again", address, exc)
            ray.shutdown()
            time.sleep(attempt)


def _use_local_token() -> None:
    """Send the local Ray auth token from a Ray client, as ``ray.init(address=...)`` does by
    itself for a driver: recent Ray clusters enable token auth, and a client that does not
    send the token times out. Ray reads the mode when imported, hence its own helper."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


FREE_NAMES_WITHIN = 10.0  # seconds to wait for killed actors' names to be released


async def kill_actors(actors: dict[str, Any], namespace: str) -> None:
    """Kill the named actors and wait (up to ``FREE_NAMES_WITHIN``) until their names are
    free, so whatever comes next can create actors of the same names."""
    for handle in actors.values():
        ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + FREE_NAMES_WITHIN
    for name in actors:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=namespace)
            except ValueError:
                break
            await asyncio.sleep(0.05)


def start_local(num_cpus: int | None, init_options: dict[str, Any]) -> None:
    """Start a local Ray whose every process binds to 127.0.0.1.

    Ray takes that from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` when it is imported; if the
    program imported Ray before eventray, the variable is set for the processes Ray starts and
    the constant this process already read is corrected (otherwise Ray would listen on every
    interface at the machine's network address).
    """
    if os.environ.get(LOCAL_ONLY, "0") == "0":
        os.environ[LOCAL_ONLY] = "0"
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    log.info("starting a local Ray (num_cpus=%s)", num_cpus)
    ray.init(num_cpus=num_cpus, include_dashboard=False, **init_options)
