"""``JobClient``: Ray's job server (the dashboard's ``/api/jobs/`` REST API) with aiohttp.

Every call is a request on one ``aiohttp.ClientSession``; zipping a ``working_dir`` runs in a
worker thread. Errors become the ``JobError`` family (``_errors``) naming the address, the
job and Ray's own message.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import math
import os
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

import eventray as er

from ._errors import (
    JobAuthError,
    JobConflict,
    JobFailed,
    JobNotFound,
    JobServerError,
    JobServerUnreachable,
)
from ._info import JobInfo, JobStatus, positive_seconds
from ._package import build_package
from ._params import with_params
from ._upload import check_target, upload_log

log = logging.getLogger("eventray.rayjobs")

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_ENV = "EVENTRAY_JOBS_ADDRESS"
TOKEN_ENV = "RAY_AUTH_TOKEN"
UPLOAD_KEY = "eventray.upload_logs_to"  # job metadata: where followers upload the log
_UNREACHABLE_RETRIES = 3  # consecutive failed polls wait()/logs() ride out


def resolve_address(address: str | None = None) -> str:
    """The job server's URL: ``address``, else ``$EVENTRAY_JOBS_ADDRESS``, else
    ``$RAY_ADDRESS`` when it is an http(s) URL (as Ray's own job CLI reads it), else
    ``http://127.0.0.1:8265``."""
    if address is None:
        ray_address = os.environ.get("RAY_ADDRESS", "")
        address = os.environ.get(ADDRESS_ENV) or (
            ray_address if ray_address.startswith(("http://", "https://")) else DEFAULT_ADDRESS)
    if not isinstance(address, str):
        raise er.ConfigError(f"must be a string, got {type(address).__name__}", field="address")
    if address.startswith("ray://"):
        raise er.ConfigError(f"{address!r} is a Ray client address; jobs go to the dashboard's "
                             "job server, http://<head>:8265", field="address")
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")) or len(address.split("://", 1)[1]) == 0:
        raise er.ConfigError(f"must be an http(s)://host:port URL, got {address!r}",
                             field="address")
    return address.rstrip("/")


_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception): .+")


def _reason(body: str) -> str:
    """Ray's message in an error body: the last ``SomeError: message`` line of its traceback
    (the job server wraps its agent's traceback in its own), else its last line."""
    lines = [line.strip() for line in body.strip().splitlines() if len(line.strip()) > 1]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    reason = errors[-1] if errors else lines[-1] if lines else "(no message)"
    return reason if len(reason) <= 500 else reason[:497] + "..."



_SUBMISSION_ID = re.compile(r"[A-Za-z0-9_@+:-][A-Za-z0-9_@+:.-]*")


def checked_id(submission_id: object) -> str:
    """``submission_id`` if it is safe in a URL path as it is (letters, digits and
    ``_ @ + : - .``, not starting with a dot); else a ``ConfigError``."""
    if not isinstance(submission_id, str) or not _SUBMISSION_ID.fullmatch(submission_id):
        raise er.ConfigError(f"must be letters, digits and _ @ + : - . (not first), got "
                             f"{submission_id!r}", field="submission_id")
    return submission_id

class JobClient:
    """An async client of a Ray cluster's job server.

    ``address`` is the dashboard's URL (see ``resolve_address`` for the default);
    ``headers`` go with every request, ``token`` (default ``$RAY_AUTH_TOKEN``) as
    ``Authorization: Bearer <token>`` for clusters with token authentication; ``verify`` is
    ``True``, ``False`` or a CA bundle path for https; ``timeout`` bounds each request;
    ``storage_options`` are extra ``object-storage-sink`` fields (``endpoint_url``,
    credentials) for ``upload_logs_to``. Use it as ``async with JobClient(...) as jobs:``.
    """

    def __init__(self, address: str | None = None, *, headers: Mapping[str, str] | None = None,
                 token: str | None = None, verify: bool | str = True, timeout: float = 30.0,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.address = resolve_address(address)
        self.timeout = positive_seconds(timeout, "timeout") or 30.0
        if not isinstance(verify, bool | str):
            raise er.ConfigError("must be True, False or a CA bundle path", field="verify")
        self.verify = verify
        self.headers = dict(headers or {})
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if token:
            self.headers.setdefault("Authorization", f"Bearer {token}")
        self.storage_options = dict(storage_options or {})
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # lifecycle

    async def __aenter__(self) -> JobClient:
        await self._open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise er.ClosedError("this JobClient is closed")
        if self._session is None:
            tls: ssl.SSLContext | bool = self.verify is not False
            if isinstance(self.verify, str):
                tls = await asyncio.to_thread(ssl.create_default_context, cafile=self.verify)
            self._session = aiohttp.ClientSession(
                headers=self.headers, connector=aiohttp.TCPConnector(ssl=tls),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout))
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (jobs on the cluster are not affected)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # requests

    async def request(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                      submission_id: str | None = None) -> Any:
        """One request to the job server: its JSON (or text) answer, or a ``JobError``."""
        session = await self._open()
        url = self.address + path
        try:
            async with session.request(method, url, json=json, data=data,
                                       timeout=aiohttp.ClientTimeout(total=self.timeout)
                                       ) as response:
                body = await response.text()
                status = response.status
                is_json = response.content_type == "application/json"
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise JobServerUnreachable(f"cannot reach the Ray job server at {self.address} "
                                       f"({method} {path}): {detail}", address=self.address,
                                       submission_id=submission_id) from exc
        if status >= 400:
            raise self._http_error(method, path, status, body, submission_id)
        if is_json:
            try:
                return jsonlib.loads(body)
            except ValueError as exc:
                raise self._unexpected(method, path, body, submission_id) from exc
        return body

    def _unexpected(self, method: str, path: str, body: str,
                    submission_id: str | None) -> JobServerError:
        return JobServerError(f"unexpected answer from the Ray job server at {self.address} to "
                              f"{method} {path}: {body[:200]!r}", status=200, reason="",
                              body=body[-4000:], address=self.address,
                              submission_id=submission_id)

    def _infos(self, answer: Any, path: str, submission_id: str | None) -> list[JobInfo]:
        """``JobInfo``s of an answer (a job or a list of them); odd answers are an error
        naming the request, not a ``KeyError``."""
        items = answer if isinstance(answer, list) else [answer]
        try:
            return [JobInfo.from_json(item) for item in items
                    if item.get("type", "SUBMISSION") == "SUBMISSION"
                    and (item.get("submission_id") or submission_id)]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._unexpected("GET", path, str(answer), submission_id) from exc

    def _http_error(self, method: str, path: str, status: int, body: str,
                    submission_id: str | None) -> JobServerError:
        reason = _reason(body)
        facts: dict[str, Any] = {"status": status, "reason": reason, "body": body[-4000:],
                                 "address": self.address, "submission_id": submission_id}
        if status in (401, 403):
            need = "requires a token" if status == 401 else "refused the token given"
            return JobAuthError(f"the Ray job server at {self.address} {need} (HTTP {status}: "
                                f"{reason}); pass token= or set ${TOKEN_ENV}", **facts)
        if status == 404 and submission_id is not None and "does not exist" in body:
            return JobNotFound(f"no Ray job {submission_id!r} at {self.address}", **facts)
        if status == 404:
            return JobServerError(f"{self.address} has no Ray job server ({method} {path}: HTTP "
                                  "404); give the dashboard's address (port 8265 by default) of "
                                  "a cluster with ray[default] installed", **facts)
        return JobServerError(f"the Ray job server at {self.address} refused {method} {path} "
                              f"(HTTP {status}): {reason}", **facts)

    # jobs

    async def version(self) -> dict[str, Any]:
        """The job server's ``/api/version`` answer (Ray's version among it)."""
        answer: dict[str, Any] = await self.request("GET", "/api/version")
        return answer

    def job(self, submission_id: str, *, upload_logs_to: str | None = None) -> Job:
        """A handle on job ``submission_id`` (not looked up until used)."""
        target = check_target(upload_logs_to) if upload_logs_to else None
        return Job(self, checked_id(submission_id), target)

    async def get(self, submission_id: str) -> Job:
        """The job ``submission_id`` (``JobNotFound`` if none); it uploads its log on its end if
        it was submitted with ``upload_logs_to``."""
        info = await self.job(submission_id).info()
        return self.job(submission_id, upload_logs_to=info.metadata.get(UPLOAD_KEY))

    async def info(self, submission_id: str) -> JobInfo:
        """``JobInfo`` of job ``submission_id``."""
        path = f"/api/jobs/{checked_id(submission_id)}"
        infos = self._infos(await self.request("GET", path, submission_id=submission_id),
                            path, submission_id)
        if not infos:
            raise self._unexpected("GET", path, "(not a submitted job)", submission_id)
        return infos[0]

    async def list(self) -> list[JobInfo]:
        """Every submitted job the cluster knows (drivers started without the job server are
        left out: they have no submission id)."""
        return self._infos(await self.request("GET", "/api/jobs/"), "/api/jobs/", None)

    async def delete(self, submission_id: str) -> bool:
        """Delete an ended job's record and logs; the job server refuses a running job."""
        path = f"/api/jobs/{checked_id(submission_id)}"
        answer = await self.request("DELETE", path, submission_id=submission_id)
        if not isinstance(answer, dict):
            raise self._unexpected("DELETE", path, str(answer), submission_id)
        return bool(answer.get("deleted", False))

    async def submit(self, entrypoint: str, *, params: Mapping[str, Any] | None = None,
                     working_dir: str | os.PathLike[str] | None = None,
                     runtime_env: Mapping[str, Any] | None = None,
                     submission_id: str | None = None,
                     metadata: Mapping[str, str] | None = None,
                     entrypoint_num_cpus: float | None = None,
                     entrypoint_num_gpus: float | None = None,
                     entrypoint_memory: int | None = None,
                     entrypoint_resources: Mapping[str, float] | None = None,
                     upload_logs_to: str | None = None) -> Job:
        """Submit ``entrypoint`` (a shell command run on the cluster) and return its ``Job``.

        ``params`` are appended as ``-k key=value ...`` (shell-quoted; the script reads them
        with ``er.job_params()``). A local ``working_dir`` is zipped and uploaded (a URI such
        as ``s3://...`` or ``gcs://...`` is passed on). With a ``submission_id`` that names a
        job already, that job is returned and nothing is submitted (two racing submits give
        one job); a different entrypoint under that id is a ``JobConflict``.
        ``upload_logs_to="s3://bucket/prefix"``: a client that waits for or follows the job
        to its end writes its log to ``<prefix>/<submission_id>.log``.
        """
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise er.ConfigError(f"must be a non-empty command, got {entrypoint!r}",
                                 field="entrypoint")
        command = with_params(entrypoint, params)
        if submission_id is not None:
            checked_id(submission_id)
        for name, amount in (("entrypoint_num_cpus", entrypoint_num_cpus),
                             ("entrypoint_num_gpus", entrypoint_num_gpus),
                             ("entrypoint_memory", entrypoint_memory),
                             *((f"entrypoint_resources[{k!r}]", v)
                               for k, v in (entrypoint_resources or {}).items())):
            if amount is not None and (isinstance(amount, bool) or
                                       not isinstance(amount, int | float) or
                                       not math.isfinite(amount) or amount < 0):
                raise er.ConfigError(f"must be a number >= 0, got {amount!r}", field=name)
        env = dict(runtime_env or {})
        if working_dir is not None:
            if "working_dir" in env:
                raise er.ConfigError("given both as an argument and in runtime_env",
                                     field="working_dir")
            env["working_dir"] = os.fspath(working_dir)
        if "working_dir" in env:
            env["working_dir"] = await self._package(env["working_dir"], env.get("excludes"))
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        if upload_logs_to is not None:
            meta[UPLOAD_KEY] = check_target(upload_logs_to)
        if submission_id is not None:
            existing = await self._existing(submission_id, command, upload_logs_to)
            if existing is not None:
                return existing
        body: dict[str, Any] = {"entrypoint": command, "submission_id": submission_id,
                                "runtime_env": env or None, "metadata": meta or None,
                                "entrypoint_num_cpus": entrypoint_num_cpus,
                                "entrypoint_num_gpus": entrypoint_num_gpus,
                                "entrypoint_memory": entrypoint_memory,
                                "entrypoint_resources": dict(entrypoint_resources or {}) or None}
        body = {key: value for key, value in body.items() if value is not None}
        try:
            answer = await self.request("POST", "/api/jobs/", json=body,
                                        submission_id=submission_id)
        except JobServerError as exc:
            if submission_id is None or "already exists" not in exc.body:
                raise
            existing = await self._existing(submission_id, command, upload_logs_to)
            if existing is None:
                raise
            return existing
        if not isinstance(answer, dict) or not answer.get("submission_id"):
            raise self._unexpected("POST", "/api/jobs/", str(answer), submission_id)
        return self.job(str(answer["submission_id"]), upload_logs_to=upload_logs_to)

    async def _existing(self, submission_id: str, command: str,
                        upload_logs_to: str | None) -> Job | None:
        try:
            info = await self.info(submission_id)
        except JobNotFound:
            return None
        if info.entrypoint != command:
            raise JobConflict(f"submission id {submission_id!r} already names a job with "
                              f"entrypoint {info.entrypoint!r}, not {command!r}",
                              address=self.address, submission_id=submission_id)
        return self.job(submission_id,
                        upload_logs_to=upload_logs_to or info.metadata.get(UPLOAD_KEY))

    async def _package(self, working_dir: Any, excludes: Any) -> str:
        """The URI of ``working_dir``: uploaded when it is a local directory."""
        if not isinstance(working_dir, str):
            raise er.ConfigError(f"must be a path or URI string, got {working_dir!r}",
                                 field="working_dir")
        if "://" in working_dir:
            return working_dir
        if excludes is not None and (not isinstance(excludes, list) or
                                     not all(isinstance(e, str) for e in excludes)):
            raise er.ConfigError("runtime_env 'excludes' must be a list of glob patterns",
                                 field="runtime_env")
        package = await asyncio.to_thread(build_package, Path(working_dir),
                                          tuple(excludes or ()))
        path = f"/api/packages/gcs/{package.name}"
        try:
            await self.request("GET", path)
        except JobServerError as exc:
            if exc.status != 404:
                raise
            await self.request("PUT", path, data=package.data)
        return package.uri


class Job:
    """One Ray job, by submission id (``job.id``), on the cluster of its ``JobClient``."""

    def __init__(self, client: JobClient, submission_id: str,
                 upload_logs_to: str | None = None) -> None:
        self.client = client
        self.id = submission_id
        self.upload_logs_to = upload_logs_to
        self.log_url: str | None = None  # where the log was uploaded, once it was
        self._upload_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Job({self.id!r} at {self.client.address})"

    async def info(self) -> JobInfo:
        """What the job server says about this job now."""
        return await self.client.info(self.id)

    async def status(self) -> JobStatus:
        """The job's status now."""
        return (await self.info()).status

    async def stop(self) -> bool:
        """Ask the cluster to stop the job; False when it had already ended."""
        path = f"/api/jobs/{self.id}/stop"
        answer = await self.client.request("POST", path, submission_id=self.id)
        if not isinstance(answer, dict):
            raise self.client._unexpected("POST", path, str(answer), self.id)
        return bool(answer.get("stopped", False))

    async def delete(self) -> bool:
        """Delete the ended job's record and logs."""
        return await self.client.delete(self.id)

    async def wait(self, poll_interval: float = 1.0,
                   timeout: float | None = None,  # noqa: ASYNC109
                   *, check: bool = False) -> JobInfo:
        """Poll every ``poll_interval`` seconds until the job ends; its final ``JobInfo``.

        Raises ``TimeoutError`` after ``timeout`` seconds, and with ``check=True``
        ``JobFailed`` unless it SUCCEEDED. A job with ``upload_logs_to`` has its log
        uploaded before this returns (``LogUploadError`` if that fails).
        """
        interval = positive_seconds(poll_interval, "poll_interval")
        limit = positive_seconds(timeout, "timeout", optional=True)
        assert interval is not None
        async with asyncio.timeout(limit):
            info = await self._poll_until_ended(interval)
        await self._upload_once()
        if check and info.status is not JobStatus.SUCCEEDED:
            raise JobFailed(f"Ray job {self.id!r} ended {info.status}: {info.message or ''}"
                            .rstrip(": "), info=info, address=self.client.address)
        return info

    async def _poll_until_ended(self, interval: float) -> JobInfo:
        failures = 0
        while True:
            try:
                info = await self.info()
                failures = 0
            except JobServerUnreachable:
                failures += 1
                if failures > _UNREACHABLE_RETRIES:
                    raise
                log.warning("job %s: the job server did not answer; trying again (%d/%d)",
                            self.id, failures, _UNREACHABLE_RETRIES)
            else:
                if info.status.terminal:
                    return info
            await asyncio.sleep(interval)

    async def logs(self, follow: bool = False, *,
                   poll_interval: float = 1.0) -> AsyncIterator[str]:
        """The job's log lines (without their line ends). With ``follow=True`` they arrive as
        the job writes them (over the job server's websocket, or by polling where that is
        not available) and the iteration ends when the job ends (after its log upload,
        when the job has ``upload_logs_to``)."""
        interval = positive_seconds(poll_interval, "poll_interval")
        assert interval is not None
        if not follow:
            for line in (await self._full_log()).splitlines():
                yield line
            return
        sent = 0
        if (await self.status()).terminal:  # the job server's tail would linger seconds
            for line in (await self._full_log()).splitlines():
                yield line
            await self._upload_once()
            return
        async for chunk in self._tail():
            sent += len(chunk)
            for line in chunk.splitlines():
                yield line
        async for chunk in self._poll_log(sent, interval):
            for line in chunk.splitlines():
                yield line
        await self._upload_once()

    async def _full_log(self) -> str:
        path = f"/api/jobs/{self.id}/logs"
        answer = await self.client.request("GET", path, submission_id=self.id)
        if not isinstance(answer, dict):
            raise self.client._unexpected("GET", path, str(answer), self.id)
        return str(answer.get("logs", ""))

    async def _tail(self) -> AsyncIterator[str]:
        """Complete lines from the websocket until it closes (the job ended or the connection
        broke: ``_poll_log`` tells which and goes on from there)."""
        session = await self.client._open()
        url = f"{self.client.address}/api/jobs/{self.id}/logs/tail"
        try:
            ws = await session.ws_connect(url, heartbeat=self.client.timeout,
                                          timeout=aiohttp.ClientWSTimeout(ws_close=10.0))
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise self.client._http_error("GET", f"/api/jobs/{self.id}/logs/tail",
                                              exc.status, f"{exc.message} does not exist"
                                              if exc.status == 404 else exc.message,
                                              self.id) from exc
            log.info("job %s: no log websocket (%s); polling the log instead", self.id, exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise JobServerUnreachable(f"cannot reach the Ray job server at "
                                       f"{self.client.address} to follow job {self.id!r}: "
                                       f"{type(exc).__name__}: {exc}",
                                       address=self.client.address,
                                       submission_id=self.id) from exc
        partial = ""
        async with ws:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                text = partial + str(message.data)
                complete, newline, partial = text.rpartition("\n")
                if newline:
                    yield complete + newline
        # a line without its end stays unsent: _poll_log sends it from the full log

    async def _poll_log(self, sent: int, interval: float) -> AsyncIterator[str]:
        """What the log holds past its first ``sent`` characters, polled until the job has
        ended and its log has been read once more after that."""
        failures = 0
        while True:
            try:
                ended = (await self.status()).terminal
                text = await self._full_log()
                failures = 0
            except JobServerUnreachable:
                failures += 1
                if failures > _UNREACHABLE_RETRIES:
                    raise
                await asyncio.sleep(interval)
                continue
            new = text[sent:]
            if ended:
                if new:
                    yield new
                return
            complete, newline, _ = new.rpartition("\n")
            if newline:
                yield complete + newline
                sent += len(complete) + 1
            await asyncio.sleep(interval)

    async def upload_logs(self, target: str | None = None) -> str:
        """Write the job's full log to ``target`` (default: its ``upload_logs_to``) as
        ``<prefix>/<submission_id>.log``; the object's URL."""
        where = check_target(target or self.upload_logs_to or "")
        return await upload_log(where, self.id, await self._full_log(),
                                self.client.storage_options)

    async def _upload_once(self) -> None:
        if self.upload_logs_to is None:
            return
        async with self._upload_lock:
            if self.log_url is None:
                try:
                    self.log_url = await self.upload_logs()
                except Exception:
                    log.exception("job %s: uploading its log failed", self.id)
                    raise
                log.info("job %s: log written to %s", self.id, self.log_url)
