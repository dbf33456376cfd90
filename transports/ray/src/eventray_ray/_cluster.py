"""Noticing that the Ray this process joined is gone (its head stopped): from then on every
operation raises a ``TransportError`` at once, instead of waiting on Ray, which retries the
lost cluster for a minute and then ends the process."""

from __future__ import annotations

import asyncio
import logging
import socket

import ray

from eventray import TransportError

log = logging.getLogger("eventray")

PROBE_EVERY = 0.5  # seconds between two looks at the cluster's GCS port


def gcs_address() -> str | None:
    """The ``host:port`` of the cluster's GCS, if this process is a driver on it (a Ray
    client has no reachable GCS of its own to watch)."""
    if ray.util.client.ray.is_connected():  # type: ignore[no-untyped-call]
        return None
    address = ray.get_runtime_context().gcs_address
    return str(address) if address else None


def answers(host: str, port: int) -> bool | None:
    """True if something listens at ``host:port``, False if the connection is refused,
    None if that cannot be told (a timeout, on a loaded machine or network)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    except OSError as exc:
        log.debug("Ray GCS at %s:%s: %s", host, port, exc)
        return None
    return True


UNSURE_LIMIT = 3  # probes in a row that cannot tell before the cluster counts as lost


class ClusterWatch:
    """Looks at the GCS port every ``PROBE_EVERY`` seconds; once nothing listens there,
    ``lost`` is set and (if ``detach``) this process detaches from Ray."""

    def __init__(self, address: str, *, detach: bool) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._host, self._port = host, int(port)
        self._detach = detach
        self.lost: TransportError | None = None
        self.gone = asyncio.Event()  # set with ``lost``

    def check(self) -> None:
        """Raise ``lost``, if the cluster is gone."""
        if self.lost is not None:
            raise self.lost

    async def run(self) -> None:
        unsure = 0
        while unsure < UNSURE_LIMIT:
            answer = await asyncio.to_thread(answers, self._host, self._port)
            if answer is False:
                break
            unsure = 0 if answer else unsure + 1
            await asyncio.sleep(PROBE_EVERY)
        self.lost = TransportError(
            f"lost the Ray cluster at {self.address} (its head node stopped, perhaps with "
            f"the program that started it); reconnect once a cluster runs", transport="ray")
        log.error("%s", self.lost)
        self.gone.set()
        if self._detach:
            await asyncio.to_thread(ray.shutdown)
