"""``RaySession``: the Ray transport once Ray is imported and attached."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import ray

from eventray import Processor, Subscriber
from eventray.spi import JobBackend, JobPlan, StageContext, TaskOwner

from ._cluster import ClusterWatch, gcs_address
from ._connection import (
    ATTACHMENT,
    STARTED,
    connect_within,
    forget_local,
    kill_actors,
)
from ._errors import ray_errors
from ._jobs import RayJob
from ._options import RayOptions
from ._subscribers import processor_for, subscriber_for
from ._topic_actor import TopicActor, topic_actor_name
from ._topics import RayTopicBackend

TopicActorClass = ray.remote(TopicActor)


class RaySession:
    """What ``RayTransport`` does once open: topics and stream stages as async actors in the
    Ray namespace ``options.namespace``."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.instance = uuid.uuid4().hex
        self.attached = False  # this bus attached the process to Ray (others may share it)
        self._handles: dict[str, Any] = {}  # topic actor handles, one per name
        self._owned: dict[str, Any] = {}  # topic actors this process created
        self._tasks = TaskOwner("ray")
        self._lock = asyncio.Lock()
        self._watch: ClusterWatch | None = None
        self._release: threading.Event | None = None

    async def open(self) -> None:
        how, self._release = await connect_within(self.options)
        self.attached = how is not None
        if how != STARTED:  # a Ray this bus did not start may go away under it
            address = await asyncio.to_thread(gcs_address)
            if address is not None:
                self._watch = ClusterWatch(address, detach=self.attached)
                self._tasks.spawn(self._watch.run(), name="cluster-watch")

    def check(self) -> None:
        """Raise a ``TransportError`` if the Ray cluster is gone."""
        if self._watch is not None:
            self._watch.check()

    @property
    def gone(self) -> asyncio.Event | None:
        """Set once the cluster is lost (None: this bus does not watch for that)."""
        return self._watch.gone if self._watch is not None else None

    @property
    def lost(self) -> bool:
        """The Ray cluster is gone: nothing may call Ray any more (a call would start a new
        local Ray, as Ray does for any call without one)."""
        return self._watch is not None and self._watch.lost is not None

    async def close(self) -> None:
        await self._tasks.aclose()
        lost = self.lost
        if not lost:
            await kill_actors(self._owned, self.options.namespace)
        self._owned.clear()
        self._handles.clear()
        if self._release is None:
            return
        self._release = None
        # Ray is shared by every bus of this process: the last one to close detaches it
        how, release = ATTACHMENT.leave()
        if how is not None:
            if how == STARTED:
                await asyncio.to_thread(forget_local)
            if not lost:  # the watch detached already
                await asyncio.to_thread(ray.shutdown)
        if release is not None:
            release.set()  # the thread that attached Ray may end now

    async def topic_actor(self, topic: str) -> Any:
        """The actor of ``topic``: found if some process created it, else created here.

        One handle per name is kept for the life of the bus: a non-detached actor lives as
        long as the handle that created it, so that handle must never be dropped early.
        """
        self.check()
        name = topic_actor_name(topic)
        async with self._lock:
            if name not in self._handles:
                with ray_errors(f"creating the actor of topic {topic!r}"):
                    handle: Any = await asyncio.to_thread(self._topic_actor, name, topic)
                    if await handle.creator.remote() == self.instance:
                        self._owned[name] = handle
                self._handles[name] = handle
            return self._handles[name]

    def _topic_actor(self, name: str, topic: str) -> Any:
        """Create (or find) a topic actor: with ``get_if_exists`` Ray asks the cluster
        first, which blocks, so this runs in a worker thread."""
        return TopicActorClass.options(
            name=name, namespace=self.options.namespace, get_if_exists=True,
            num_cpus=0, max_concurrency=1000, runtime_env=self.options.runtime_env,
        ).remote(topic, self.options.namespace, self.instance, self.options.queue_batches)

    def topic_backend(self, name: str) -> RayTopicBackend:
        return RayTopicBackend(name, self.topic_actor, self.instance, self._tasks,
                               self.options.queue_size, check=self.check)

    def adapt_subscriber(self, target: object) -> Subscriber | None:
        return subscriber_for(target, self.options.event_window)

    def adapt_operator(self, target: object) -> Processor | None:
        return processor_for(target, self.options.event_window)

    async def run_job(self, plan: JobPlan, ctx: StageContext) -> JobBackend:
        self.check()
        return await RayJob(plan, ctx, self).start()
