"""Joining or starting Ray, and knowing which of the two we did."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import ray
from ray.exceptions import RayError

from eventray import TransportError

from ._cluster import answers
from ._options import RayOptions

log = logging.getLogger("eventray")

LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
STARTED, JOINED = "started", "joined"


class _Attachment:
    """eventray's hold on Ray in this process, shared by every bus in it: one connect at a
    time, and Ray is detached (a Ray eventray started is stopped) when the last bus closes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.how: str | None = None  # how eventray attached this process (None: it did not)
        self.release: threading.Event | None = None  # ends the thread that attached Ray

    def join(self) -> None:
        with self.lock:
            self.users += 1

    def leave(self) -> tuple[str | None, threading.Event | None]:
        """One bus closed: how eventray attached Ray, and the attaching thread's event, if
        this was the last bus (then the caller detaches); else (None, None)."""
        with self.lock:
            self.users -= 1
            if self.users > 0 or self.how is None:
                return None, None
            how, release = self.how, self.release
            self.how = self.release = None
            return how, release


ATTACHMENT = _Attachment()


class _NoSignalWarning(logging.Filter):
    """eventray starts Ray from a worker thread so the event loop never blocks; Ray then warns
    that it could not install its SIGTERM handler, which eventray does not need (closing the
    bus shuts down a Ray it started)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def connect(options: RayOptions) -> str | None:
    """Make sure this process is attached to Ray; return how this call attached it
    (``STARTED`` or ``JOINED``), or None if the process already was.

    An already initialised Ray is used as it is (and left alone on close); otherwise
    ``options.address`` (a Ray client URL), then ``RAY_ADDRESS``, then the running local
    cluster (``running_local_cluster``) is joined, and failing all of those a local Ray is
    started with every process on 127.0.0.1. Whatever this call attached, ``ray.shutdown()``
    detaches again: that stops a Ray started here and only disconnects from a joined one.
    """
    if ray.is_initialized():
        return None
    for name in ("ray", "ray._private.worker"):
        logging.getLogger(name).addFilter(_NoSignalWarning())
    local_only()
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "runtime_env": options.runtime_env}
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("ray://"):
        _use_local_token()
        _init_client(address, quiet)
        return JOINED
    if address:
        ray.init(address=address, **quiet)
        return JOINED
    running = running_local_cluster()
    if running:
        _use_local_token()  # as ray.init does by itself for a cluster it finds
        ray.init(address=running, **quiet)
        return JOINED
    start_local(options.num_cpus, quiet)
    return STARTED


def running_local_cluster() -> str | None:
    """The address of the local Ray that was started last on this machine (``ray start`` or
    a program's ``ray.init``), if its GCS still answers. Unlike ``address="auto"`` this never
    picks whichever other Ray happens to run here (another user's, another temp dir's)."""
    from ray._private.services import find_bootstrap_address

    address: str | None = find_bootstrap_address(None)
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if answers(host, int(port)) is False:
        log.info("the local Ray recorded at %s is gone; starting a new one", address)
        return None
    return address


def local_only() -> None:
    """Make this process use 127.0.0.1 as its node address when ``LOCAL_ONLY`` says so.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is imported; a program that
    imported Ray before eventray (which sets the variable to 0 unless it is set) has Ray
    believe otherwise, so a Ray started here would listen on the machine's address and
    joining a local Ray on 127.0.0.1 would wait forever for a node at the machine's address.
    """
    if os.environ.setdefault(LOCAL_ONLY, "0") == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


async def connect_within(options: RayOptions) -> tuple[str | None, threading.Event]:
    """``connect`` in a thread of its own, giving up after ``options.connect_timeout`` s
    with a ``TransportError`` that says where it tried and what to try.

    The thread is a daemon: a ``ray.init`` that hangs can be neither cancelled nor waited
    for at exit (should it attach after all, it detaches again). Ray needs the thread that
    attached it to live while attached: it waits until the returned event is set (after
    ``ray.shutdown``).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()
    gave_up, release = threading.Event(), threading.Event()

    def attach() -> None:
        try:
            with ATTACHMENT.lock:  # one bus at a time attaches this process
                how = connect(options)
                if how is not None and not gave_up.is_set():
                    ATTACHMENT.how, ATTACHMENT.release = how, release
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, done, None, exc)
            return
        if gave_up.is_set():
            if how is not None:
                log.warning("Ray connection completed after eventray gave up; detaching")
                with ATTACHMENT.lock:
                    if ATTACHMENT.users == 0:
                        ray.shutdown()
            return
        loop.call_soon_threadsafe(_settle, done, how, None)
        if how is not None:
            release.wait()

    threading.Thread(target=attach, name="eventray-ray", daemon=True).start()
    address = options.address or os.environ.get("RAY_ADDRESS") or ""
    # the timeout is per attempt, and a Ray client is tried CLIENT_ATTEMPTS times
    attempts = CLIENT_ATTEMPTS if address.startswith("ray://") else 1
    timeout = options.connect_timeout * attempts + sum(range(1, attempts))
    try:
        async with asyncio.timeout(timeout):
            how = await asyncio.shield(done)
        ATTACHMENT.join()
        return how, release
    except TimeoutError:
        gave_up.set()
        where = address or "the local Ray (or starting one)"
        raise TransportError(
            f"could not connect to {where} within {timeout:g}s ({attempts} attempt(s)); "
            f"check that the cluster is "
            f"running and reachable (`ray status`), that RAY_ADDRESS names it, or raise "
            f"connect_timeout", transport="ray") from None


def _settle(future: asyncio.Future[str | None], result: str | None,
            error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


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


def _kill_each(handles: list[Any]) -> None:
    for handle in handles:
        ray.kill(handle, no_restart=True)


def _name_taken(name: str, namespace: str) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    return True


async def kill_actors(actors: dict[str, Any], namespace: str) -> None:
    """Kill the named actors and wait (up to ``FREE_NAMES_WITHIN``) until their names are
    free, so whatever comes next can create actors of the same names. Ray's blocking calls
    run in a worker thread."""
    if not actors or not ray.is_initialized():  # Ray's calls would start a new Ray
        return
    await asyncio.to_thread(_kill_each, list(actors.values()))
    try:
        async with asyncio.timeout(FREE_NAMES_WITHIN):
            for name, handle in actors.items():
                try:
                    await handle.__ray_ready__.remote()  # fails once the actor is dead
                except RayError as exc:
                    log.debug("actor %s is dead, as asked (%s)", name, type(exc).__name__)
                while True:
                    if not await asyncio.to_thread(_name_taken, name, namespace):
                        break
                    await asyncio.sleep(0.05)
    except TimeoutError:
        log.warning("killed actors still hold their names after %ss: %s", FREE_NAMES_WITHIN,
                    ", ".join(actors))


class _NoAuthNotice(logging.Filter):
    """Ray announces the token authentication of every local Ray it starts; for one that
    eventray starts for this program alone that notice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is")


def start_local(num_cpus: int | None, init_options: dict[str, Any]) -> None:
    """Start a local Ray whose every process binds to 127.0.0.1 (see ``local_only``), and
    name it as the machine's running local Ray, as ``ray start`` does, so that other
    programs' ``er.connect()`` (and ``ray.init()``) join it."""
    log.info("starting a local Ray (num_cpus=%s)", num_cpus)
    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet = _NoAuthNotice()
    notices.addFilter(quiet)
    try:
        # "local": a new Ray even if the machine names another (join decisions came before)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **init_options)
    finally:
        notices.removeFilter(quiet)
    from ray._private.utils import write_ray_address

    write_ray_address(ray.get_runtime_context().gcs_address)


def forget_local() -> None:
    """Before stopping a Ray that ``start_local`` started: stop naming it as the machine's
    running local Ray (unless another has been named since)."""
    from ray._common.utils import get_ray_address_file

    path = get_ray_address_file(None)
    try:
        with open(path) as named:
            if named.read().strip() == ray.get_runtime_context().gcs_address:
                os.remove(path)
    except OSError as exc:
        log.debug("could not forget the local Ray's address in %s: %s", path, exc)
