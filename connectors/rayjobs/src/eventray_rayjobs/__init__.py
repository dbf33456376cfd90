"""Ray jobs for eventray: ``JobClient`` (also ``er.JobClient``), the ``ray-job-source``
connector kind and the ``eventray job`` commands; ``eventray_rayjobs.testing`` starts a real
Ray head with its job server on 127.0.0.1."""

from ._client import DEFAULT_ADDRESS, Job, JobClient, resolve_address
from ._errors import (
    JobAuthError,
    JobConflict,
    JobError,
    JobFailed,
    JobNotFound,
    JobServerError,
    JobServerUnreachable,
    LogUploadError,
)
from ._info import JobInfo, JobStatus
from ._source import RayJobSource, RayJobSourceConfig

__all__ = [
    "DEFAULT_ADDRESS",
    "Job",
    "JobAuthError",
    "JobClient",
    "JobConflict",
    "JobError",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "JobServerError",
    "JobServerUnreachable",
    "JobStatus",
    "LogUploadError",
    "RayJobSource",
    "RayJobSourceConfig",
    "resolve_address",
]
