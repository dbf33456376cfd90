"""A job's status and what the job server says about it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from eventray import ConfigError


class JobStatus(StrEnum):
    """A Ray job's status, as the job server names it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (STOPPED, SUCCEEDED or FAILED)."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class JobInfo:
    """One job as the job server describes it (times in ms since the epoch)."""

    submission_id: str
    status: JobStatus
    entrypoint: str
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    driver_exit_code: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInfo:
        return cls(
            submission_id=str(data.get("submission_id") or data.get("job_id") or ""),
            status=JobStatus(data["status"]),
            entrypoint=str(data.get("entrypoint") or ""),
            message=data.get("message"),
            error_type=data.get("error_type"),
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            driver_exit_code=data.get("driver_exit_code"),
            metadata=dict(data.get("metadata") or {}),
            runtime_env=dict(data.get("runtime_env") or {}),
            raw=data,
        )


def positive_seconds(value: object, name: str, *, optional: bool = False) -> float | None:
    """``value`` as seconds: a finite int or float above 0 (``None`` when ``optional``).
    A string such as ``"20"`` is refused rather than parsed (ray-pod read it in base 20)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"must be a number of seconds above 0, got {value!r}", field=name)
    return float(value)
