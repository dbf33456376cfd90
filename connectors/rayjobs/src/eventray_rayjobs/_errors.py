"""What the job client raises: every error is an ``er.EventrayError``.

::

    JobError                          root; ``address`` and ``submission_id`` when known
    ├── JobServerUnreachable          no answer from the job server (also er.TransportError)
    ├── JobServerError                the job server answered 4xx/5xx; ``status``, ``reason``
    │   ├── JobAuthError              401/403: a token is missing or wrong
    │   └── JobNotFound               404 for a submission id
    ├── JobConflict                   a submission id already names a different job
    ├── JobFailed                     ``wait(check=True)``: the job ended other than SUCCEEDED
    └── LogUploadError                the job's log could not be written to object storage
"""

from __future__ import annotations

from typing import Any

import eventray as er


class JobError(er.EventrayError):
    """Root of the job client's errors."""

    def __init__(self, message: str, *, address: str | None = None,
                 submission_id: str | None = None) -> None:
        er.EventrayError.__init__(self, message)
        self.address = address
        self.submission_id = submission_id

    def __reduce__(self) -> tuple[Any, ...]:  # crosses processes with its attributes
        return (_rebuild, (type(self), self.args, self.__dict__))


class JobServerUnreachable(JobError, er.TransportError):
    """The job server at ``address`` did not answer (refused, timed out, reset)."""

    def __init__(self, message: str, *, address: str | None = None,
                 submission_id: str | None = None) -> None:
        JobError.__init__(self, message, address=address, submission_id=submission_id)
        self.message = message
        self.transport = "ray-jobs"


class JobServerError(JobError):
    """The job server answered with an error; ``status`` is the HTTP status and ``reason``
    Ray's own message (the error line of its traceback when it sent one), ``body`` the end
    of what it sent."""

    def __init__(self, message: str, *, status: int, reason: str, body: str = "",
                 address: str | None = None, submission_id: str | None = None) -> None:
        super().__init__(message, address=address, submission_id=submission_id)
        self.status = status
        self.reason = reason
        self.body = body


class JobAuthError(JobServerError):
    """The cluster requires a token (401) or refused the one given (403)."""


class JobNotFound(JobServerError):
    """No job has this submission id."""


class JobConflict(JobError):
    """``submit(submission_id=...)`` found a job with that id and a different entrypoint."""


class JobFailed(JobError):
    """The job ended FAILED or STOPPED; ``info`` is its final ``JobInfo``."""

    def __init__(self, message: str, *, info: Any, address: str | None = None) -> None:
        super().__init__(message, address=address, submission_id=info.submission_id)
        self.info = info


class LogUploadError(JobError):
    """Writing the job's log to object storage failed; the cause is chained."""


def _rebuild(cls: type[JobError], args: tuple[Any, ...], state: dict[str, Any]) -> JobError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
