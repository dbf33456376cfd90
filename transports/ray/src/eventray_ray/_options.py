"""The Ray transport's options; importing this does not import Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventray import ConfigError


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
    connect_timeout: float = 30.0  # seconds er.connect waits for Ray (per Ray client attempt)
    # checkpointed jobs: batches each channel keeps for replay, and restores per stage actor
    replay_batches: int = 128
    max_restarts: int = 5

    def __post_init__(self) -> None:
        for name in ("queue_size", "queue_batches", "credits", "event_window",
                     "replay_batches", "max_restarts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive int, got {value!r}", kind="ray",
                                  field=name)
        if not isinstance(self.stage_num_cpus, (int, float)) or self.stage_num_cpus < 0:
            raise ConfigError(f"must be a non-negative number, got {self.stage_num_cpus!r}",
                              kind="ray", field="stage_num_cpus")
        if not isinstance(self.connect_timeout, (int, float)) or self.connect_timeout <= 0:
            raise ConfigError(f"must be a positive number, got {self.connect_timeout!r}",
                              kind="ray", field="connect_timeout")
        if not self.namespace or not isinstance(self.namespace, str):
            raise ConfigError("must be a non-empty string", kind="ray", field="namespace")


def parse_url(url: str) -> str | None:
    """The Ray address in an ``er.connect`` URL: None for ``"ray"``, the URL for ``ray://``."""
    if url.rstrip("/") in ("ray", "ray:"):
        return None
    if url.startswith("ray://") and len(url) > len("ray://"):
        return url
    raise ConfigError(f"expected 'ray' or 'ray://host:port', got {url!r}", kind="ray",
                      field="url")
