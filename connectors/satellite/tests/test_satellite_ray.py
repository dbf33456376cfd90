"""satellite-source and satellite-sink in Ray stage actors: packets reach the devices' side
and are acknowledged once the final checkpoint of a drain holds them."""

from __future__ import annotations

import uuid

import pytest

import eventray as er
from eventray_satellite.testing import HiveSimulator

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


async def test_packets_relayed_on_ray_are_acked_by_the_final_checkpoint() -> None:
    async with HiveSimulator() as hive, \
            er.connect("ray", namespace=f"satellite-{uuid.uuid4().hex[:8]}") as bus:
        login = {"base_url": hive.url, "username": hive.username, "password": hive.password}
        sent = [hive.inject(20, f"echo {n}") for n in range(3)]
        job = await (
            bus.from_source({"kind": "satellite-source", **login, "period": 50})
            .map(lambda packet: {"device_id": packet["device_id"] + 1, "data": packet["data"]})
            .sink({"kind": "satellite-sink", **login, "application_id": 9})
            .run("satellite-echo", checkpoint_interval=3600, checkpoint_store=er.MemoryStore())
        )
        try:
            relayed = await hive.wait_for_sent(3, timeout=60)
            assert hive.acked == [], "no checkpoint holds them yet"
        finally:
            await job.stop(drain=True)
        assert [(m.device_id, m.data) for m in relayed] == [(21, b"echo 0"), (21, b"echo 1"),
                                                           (21, b"echo 2")]
        assert sorted(hive.acked) == sent
