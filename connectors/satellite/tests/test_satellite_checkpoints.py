"""satellite-source in running streams: packets are acknowledged only once a checkpoint
holding them is durable, a drain delivers what is in flight and acknowledges it with the
final checkpoint, and a resumed job delivers the rest exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

from satellite_helpers import until

import eventray as er
from eventray.testing import Recorder
from eventray_satellite.testing import HiveSimulator


def config_for(hive: HiveSimulator, **fields: Any) -> dict[str, Any]:
    return {"kind": "satellite-source", "base_url": hive.url, "username": hive.username,
            "password": hive.password, "period": 10, **fields}


async def test_no_ack_before_the_checkpoint_and_every_packet_once() -> None:
    store = er.MemoryStore()
    async with HiveSimulator() as hive, er.connect("memory") as bus:
        sent = [hive.inject(1, f"p{n}") for n in range(3)]
        got = Recorder()
        job = await (bus.from_source(config_for(hive)).sink(got)
                     .run("downlink", checkpoint_interval=3600, checkpoint_store=store))
        values = await got.wait_for(3)
        await hive.wait_for_handed_out(sent[0], times=3)  # polled again and again meanwhile
        assert [v["packet_id"] for v in values] == sent
        assert hive.acked == [], "delivered, but no checkpoint holds them yet"
        await job.stop(drain=True)  # the final checkpoint holds them: now they are acked
        assert sorted(hive.acked) == sent
        assert len(got.values) == 3, "handed out again and again, delivered once"


async def test_periodic_checkpoints_ack_what_they_hold() -> None:
    async with HiveSimulator() as hive, er.connect("memory") as bus:
        got = Recorder()
        job = await (bus.from_source(config_for(hive)).sink(got)
                     .run("periodic", checkpoint_interval=0.05,
                          checkpoint_store=er.MemoryStore()))
        sent = []
        for n in range(4):
            sent.append(hive.inject(2, f"q{n}"))
            await hive.wait_for_acked(sent)
        assert [v["packet_id"] for v in got.values] == sent
        await job.stop(drain=True)


async def test_a_drain_delivers_in_flight_packets_and_a_resumed_job_the_rest_once() -> None:
    store = er.MemoryStore()
    async with HiveSimulator() as hive, er.connect("memory") as bus:
        sent = [hive.inject(3, f"m{n}") for n in range(30)]
        delivered: list[int] = []
        first = asyncio.Event()

        async def slow(value: dict[str, Any]) -> None:
            first.set()
            await asyncio.sleep(0.01)
            delivered.append(value["packet_id"])

        config = config_for(hive, page_size=5, max_per_poll=10)
        job = await (bus.from_source(config).sink(slow)
                     .run("drained", batch_size=5, checkpoint_interval=3600,
                          checkpoint_store=store))
        await first.wait()
        await job.stop(drain=True)
        taken = len(delivered)
        assert 0 < taken < 30, "stopped mid-stream"
        assert delivered == sent[:taken], "what the stream took reached the sink"
        assert sorted(hive.acked) == sent[:taken], "and only that is acknowledged"
        job = await (bus.from_source(config).sink(slow)
                     .run("drained", batch_size=5, checkpoint_interval=3600,
                          checkpoint_store=store, resume=True))
        await until(lambda: len(delivered) >= 30, what="the rest delivered")
        await job.stop(drain=True)
        assert delivered == sent, "the rest, each exactly once"
        assert sorted(hive.acked) == sent


async def test_a_failing_gateway_never_fails_the_job() -> None:
    async with HiveSimulator() as hive, er.connect("memory") as bus:
        got = Recorder()
        hive.fail_next(4, status=500)
        packet = hive.inject(4, "late")
        source = er.connector("satellite-source", **{
            k: v for k, v in config_for(hive).items() if k != "kind"})
        source.backoff_initial = source.backoff_max = 0.02
        job = await (bus.from_source(source).sink(got)
                     .run("flaky", checkpoint_interval=0.05, checkpoint_store=er.MemoryStore()))
        [value] = await got.wait_for(1)
        assert value["packet_id"] == packet
        await hive.wait_for_acked([packet])
        assert not job.done
        await job.stop(drain=True)
