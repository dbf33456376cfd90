"""``eventray job submit|status|logs|stop|list|delete``: the job client on the command line.

The ``eventray`` command finds these through the ``eventray.cli`` entry point group.
Exit codes: 0 the job SUCCEEDED (or the command did what it was asked), 1 it FAILED,
3 it was STOPPED, 4 the cluster could not be asked (unreachable, unknown job, refused),
2 bad usage. Status and log lines follow the job while ``--follow`` runs: on a terminal a
status line updates in place below the log; otherwise status changes are plain lines on
stderr and the log alone is on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import eventray as er

from ._client import ADDRESS_ENV, TOKEN_ENV, Job, JobClient
from ._info import JobInfo, JobStatus

DESCRIPTION = """\
Submit, follow, stop and list the jobs of a Ray cluster through its job server.

Exit codes: 0 the job SUCCEEDED (or the command did what it was asked), 1 it FAILED,
3 it was STOPPED, 4 the cluster could not be asked (unreachable, unknown job, refused),
2 bad usage. While --follow runs, a status line updates in place below the log on a
terminal; otherwise status changes are plain lines on stderr and stdout holds the log."""

EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 3}
EXIT_UNREACHABLE = 4


def add_job_commands(commands: Any) -> None:
    """Add ``job`` and its subcommands to the ``eventray`` parser's ``commands``."""
    job = commands.add_parser("job", help="submit and follow Ray jobs", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = job.add_subparsers(dest="job_command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help)
        parser.add_argument("--address", help=f"the job server's URL (default ${ADDRESS_ENV}, "
                            "else $RAY_ADDRESS if it is an http URL, else "
                            "http://127.0.0.1:8265)")
        parser.add_argument("--token", help=f"token for clusters with token authentication "
                            f"(default ${TOKEN_ENV})")
        return parser

    submit = add("submit", "submit a Python script as a Ray job")
    submit.add_argument("script", help="a local Python file; its folder is uploaded as the "
                        "job's working_dir unless --working-dir says otherwise")
    submit.add_argument("-k", "--param", dest="params", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE", help="parameters the script reads with "
                        "er.job_params()")
    submit.add_argument("--working-dir", help="folder to upload (it must hold the script)")
    submit.add_argument("--submission-id", help="the job's id; submitting the same id again "
                        "attaches to that job instead of starting another")
    submit.add_argument("--upload-logs", metavar="S3_URL",
                        help="s3://bucket/prefix: write the log there when the job ends "
                        "(done by this command, so it implies --follow)")
    submit.add_argument("--num-cpus", type=float, help="CPUs reserved for the entrypoint")
    submit.add_argument("--follow", action="store_true",
                        help="follow the log and status until the job ends")
    submit.set_defaults(run=_run(_submit))

    status = add("status", "print a job's status")
    status.add_argument("submission_id")
    status.add_argument("--json", action="store_true", help="print the job's info as JSON")
    status.set_defaults(run=_run(_status))

    logs = add("logs", "print a job's log")
    logs.add_argument("submission_id")
    logs.add_argument("--follow", action="store_true", help="follow until the job ends")
    logs.set_defaults(run=_run(_logs))

    stop = add("stop", "stop a job")
    stop.add_argument("submission_id")
    stop.set_defaults(run=_run(_stop))

    listing = add("list", "list the cluster's jobs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_run(_list))

    delete = add("delete", "delete an ended job's record and log")
    delete.add_argument("submission_id")
    delete.set_defaults(run=_run(_delete))


def _run(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(asyncio.run(command(args)))
        except er.EventrayError as exc:
            print(f"eventray job: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, er.ConfigError) else EXIT_UNREACHABLE
        except KeyboardInterrupt:
            print("\neventray job: interrupted (the job itself goes on; stop it with "
                  "`eventray job stop <id>`)", file=sys.stderr)
            return 130
    return run


def _client(args: argparse.Namespace) -> JobClient:
    return JobClient(args.address, token=args.token)


def _params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise er.ConfigError(f"expected KEY=VALUE, got {pair!r}", field="-k")
        if key in params:
            raise er.ConfigError(f"parameter {key!r} given twice", field="-k")
        params[key] = value
    return params


def _script(args: argparse.Namespace) -> tuple[str, Path]:
    """The entrypoint running ``args.script`` and the folder to upload with it."""
    script = Path(args.script).resolve()
    if not script.is_file():
        raise er.ConfigError(f"no such file: {args.script}", field="script")
    root = Path(args.working_dir).resolve() if args.working_dir else script.parent
    if not root.is_dir():
        raise er.ConfigError(f"not a directory: {args.working_dir}", field="--working-dir")
    if not script.is_relative_to(root):
        raise er.ConfigError(f"{args.script} is not inside {args.working_dir}",
                             field="--working-dir")
    return f"python {shlex.quote(script.relative_to(root).as_posix())}", root


async def _submit(args: argparse.Namespace) -> int:
    entrypoint, root = await asyncio.to_thread(_script, args)
    async with _client(args) as jobs:
        job = await jobs.submit(entrypoint, params=_params(args.params), working_dir=root,
                                submission_id=args.submission_id,
                                entrypoint_num_cpus=args.num_cpus,
                                upload_logs_to=args.upload_logs)
        print(job.id, flush=True)
        if not (args.follow or args.upload_logs):
            return 0
        return await _follow(job)


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as jobs:
        info = await jobs.info(args.submission_id)
    if args.json:
        print(json.dumps(info.raw, indent=2))
    else:
        print(f"{info.submission_id}  {info.status}  {info.message or ''}".rstrip())
    return 0


async def _logs(args: argparse.Namespace) -> int:
    async with _client(args) as jobs:
        if not args.follow:
            async for line in jobs.job(args.submission_id).logs():
                print(line)
            return 0
        return await _follow(await jobs.get(args.submission_id))


async def _stop(args: argparse.Namespace) -> int:
    async with _client(args) as jobs:
        stopped = await jobs.job(args.submission_id).stop()
    print(f"{args.submission_id}: {'stopping' if stopped else 'had already ended'}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with _client(args) as jobs:
        infos = sorted(await jobs.list(), key=lambda info: info.start_time or 0)
    if args.json:
        print(json.dumps([info.raw for info in infos], indent=2))
        return 0
    for info in infos:
        print(f"{info.submission_id}  {info.status.value:<9}  {info.entrypoint}")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with _client(args) as jobs:
        deleted = await jobs.delete(args.submission_id)
    print(f"{args.submission_id}: {'deleted' if deleted else 'not deleted'}")
    return 0


class StatusDisplay:
    """Log lines on ``out``; the job's status as a line updated in place below them when
    ``out`` is a terminal, else as plain lines on ``err`` when it changes."""

    SPINNER = "|/-\\"

    def __init__(self, job_id: str, out: TextIO, err: TextIO) -> None:
        self.job_id = job_id
        self.out = out
        self.err = err
        self.live = out.isatty()
        self.current = ""
        self.last: JobStatus | None = None
        self.ticks = 0
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        if self.live:
            self.out.write(f"\r\x1b[K{text}\n{self.current}")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def status(self, info: JobInfo) -> None:
        self.ticks += 1
        elapsed = int(time.monotonic() - self.started)
        if self.live:
            spin = self.SPINNER[self.ticks % len(self.SPINNER)]
            self.current = f"{spin} {self.job_id}  {info.status.value}  {elapsed}s"
            self.out.write(f"\r\x1b[K{self.current}")
            self.out.flush()
        elif info.status is not self.last:
            print(f"[{self.job_id}] {info.status.value}", file=self.err, flush=True)
        self.last = info.status

    def end(self, info: JobInfo, log_url: str | None) -> None:
        message = f"{self.job_id} {info.status.value}"
        if info.message and info.status is not JobStatus.SUCCEEDED:
            message += f": {info.message}"
        if log_url:
            message += f" (log: {log_url})"
        if self.live:
            self.out.write(f"\r\x1b[K{message}\n")
            self.out.flush()
        else:
            print(message, file=self.err, flush=True)


async def _follow(job: Job, poll_interval: float = 1.0) -> int:
    display = StatusDisplay(job.id, sys.stdout, sys.stderr)

    async def watch() -> JobInfo:
        while True:
            info = await job.info()
            display.status(info)
            if info.status.terminal:
                return info
            await asyncio.sleep(poll_interval)

    watcher = asyncio.create_task(watch())
    try:
        async for line in job.logs(follow=True, poll_interval=poll_interval):
            display.line(line)
        info = await watcher
    finally:
        if not watcher.done():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    display.end(info, job.log_url)
    return EXIT_CODES.get(info.status, 1)
