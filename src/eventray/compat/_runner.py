"""The synchronous facades' engine: one event loop in a thread of its own, one bus on it.

Every facade call runs a coroutine on that loop and waits for it, for a bounded time. The loop
is started on first use and stopped by ``shutdown()`` (which ``rayvens``' ``disconnect_all``
calls once nothing else is in use, and an ``atexit`` hook calls at interpreter exit): that
delivers what was published, closes the bus (so the topic and stage actors it created are
killed, and a Ray it started is stopped), ends the loop and joins its thread.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

import eventray as er

log = logging.getLogger("eventray.compat")

T = TypeVar("T")

CALL_TIMEOUT = 60.0  # seconds an ordinary facade call (subscribe, publish, add_sink) may take
OPEN_TIMEOUT = 120.0  # joining or starting Ray
CLOSE_TIMEOUT = 30.0  # delivering what was published, per step of the bus's close
JOIN_TIMEOUT = 10.0
SETTLE_ROUNDS = 10  # the loop's thread ending once the bus is closed


def ray_running() -> bool:
    """Whether this process is attached to Ray (False if Ray is not even imported)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


class Part(Protocol):
    """Something a facade runs on the loop (a Rayvens stream), closed in three steps so that
    chains of them lose nothing whatever order they were made in."""

    async def stop_sources(self) -> None:
        """Stop reading from outside (what was read is passed on)."""

    async def finish(self) -> None:
        """Pass on what is held back (a partial batch, what tasks published)."""

    async def aclose(self) -> None:
        """Detach, once everything was delivered."""


class Runner:
    """An event loop in a daemon thread and the bus the facades share."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("EVENTRAY_URL") or "ray"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="eventray-compat", daemon=True)
        self._bus: er.Bus | None = None
        self._parts: list[Part] = []
        self._stopped = False
        self.users = 0  # clients and contexts, which stay until the program ends
        self.published_on_loop = 0  # events handlers published (see ``settle``)

    # the loop's thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            try:
                leftover = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
                for task in leftover:
                    task.cancel()
                if leftover:
                    log.warning("eventray.compat: %d task(s) still running at shutdown were "
                                "cancelled", len(leftover))
                    self._loop.run_until_complete(
                        asyncio.gather(*leftover, return_exceptions=True))
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    # calls from the program's threads

    @property
    def bus(self) -> er.Bus:
        if self._bus is None:
            raise er.ClosedError("eventray.compat is not started")
        return self._bus

    @property
    def stopped(self) -> bool:
        return self._stopped

    def on_loop(self) -> bool:
        """Whether the caller runs on the loop (a handler called by eventray)."""
        return threading.get_ident() == self._thread.ident

    def call(self, coro: Coroutine[Any, Any, T], what: str,
             timeout: float | None = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the loop and return its result, waiting up to ``timeout`` s
        (``None``: as long as it takes) before cancelling it and raising ``TimeoutError``."""
        if self._stopped:
            coro.close()
            raise er.ClosedError(f"{what}: eventray.compat was shut down")
        if self.on_loop():
            coro.close()
            raise RuntimeError(
                f"{what} cannot be called from a subscriber or operator: they run on "
                "eventray's event loop, which this call would wait for")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise
            future.cancel()
            raise TimeoutError(f"{what} did not finish within {timeout:g}s") from None
        except BaseException:
            future.cancel()
            raise

    def start(self) -> None:
        self._thread.start()
        self.call(self._open(), "connecting to Ray", OPEN_TIMEOUT)

    async def _open(self) -> None:
        options: dict[str, Any] = {}
        if self.url == "ray":
            options["num_cpus"] = os.cpu_count() or 1  # for a Ray this starts, as Rayvens did
        bus = er.connect(self.url, close_timeout=CLOSE_TIMEOUT, **options)
        await bus.__aenter__()
        self._bus = bus

    def adopt(self, part: Part) -> None:
        """Close ``part`` (before the bus) when this runner stops."""
        self._parts.append(part)

    def release(self, part: Part) -> None:
        if part in self._parts:
            self._parts.remove(part)

    @property
    def parts(self) -> list[Part]:
        return list(self._parts)

    def stop(self) -> None:
        """Deliver what was published, close every part and the bus, end the loop, join it."""
        if self._stopped:
            return
        try:
            if self._thread.is_alive() and self._bus is not None:
                self.call(self._close(), "shutting eventray.compat down",
                          CLOSE_TIMEOUT * 6 + JOIN_TIMEOUT)
        except Exception as exc:
            hint = "" if ray_running() else " (Ray was shut down first: call ray.shutdown() " \
                "after eventray's delivery, or not at all)"
            log.error("eventray.compat: events published before the end may not have been "
                      "delivered: %s%s", exc, hint)
        finally:
            self._stopped = True
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(JOIN_TIMEOUT)
                if self._thread.is_alive():
                    log.warning("eventray.compat: the event loop's thread did not end within "
                                "%ss", JOIN_TIMEOUT)

    async def settle(self) -> None:
        """Flush every topic until handlers publish nothing more (at most ``SETTLE_ROUNDS``
        rounds): a handler publishing to another topic during the exit flush is delivered."""
        bus = self.bus
        for _ in range(SETTLE_ROUNDS):
            published = self.published_on_loop
            for name in bus.topics():
                await bus.topic(name).flush()
            if self.published_on_loop == published:
                return
        log.warning("eventray.compat: handlers were still publishing after %d flushes",
                    SETTLE_ROUNDS)

    async def _close(self) -> None:
        try:
            parts, self._parts = self._parts, []
            await self._each(parts, "stop_sources")
            for _ in range(SETTLE_ROUNDS):  # until nothing held back is left anywhere
                await self.settle()
                published = self.published_on_loop
                await self._each(parts, "finish")
                if self.published_on_loop == published:
                    break
            await self._each(parts, "aclose")
        finally:
            if self._bus is not None:
                await self._bus.close()

    @staticmethod
    async def _each(parts: list[Part], step: str) -> None:
        for part in parts:
            try:
                await getattr(part, step)()
            except Exception:
                log.exception("eventray.compat: %s of %r failed", step, part)


_lock = threading.RLock()
_current: Runner | None = None


def runner() -> Runner:
    """The running runner, started (joining or starting Ray) on first use."""
    global _current
    with _lock:
        if _current is None or _current.stopped:
            started = Runner()
            try:
                started.start()
            except BaseException:
                started.stop()
                raise
            _current = started
            _register_exit_hook()
        return _current


_hooked = False


def _register_exit_hook() -> None:
    """Call ``shutdown`` when the program ends: before Python stops thread pools (which the
    bus's close uses) and before Ray's own exit hook. ``threading._register_atexit`` is what
    ``concurrent.futures`` uses for the same reason; without it, ``atexit`` (which runs after
    thread pools are stopped) is the fallback."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit")
        register(shutdown)
    except RuntimeError:
        atexit.register(shutdown)


def current() -> Runner | None:
    """The running runner, if any (nothing is started)."""
    with _lock:
        return _current if _current is not None and not _current.stopped else None


def shutdown() -> None:
    """Stop the runner, if one runs: what was published is delivered first (bounded)."""
    global _current
    with _lock:
        stopping, _current = _current, None
    if stopping is not None:
        stopping.stop()
