"""Space Beaver, the flagship: e-mail, SMS and a satellite network bridged on Ray.

Mail to <user>@beaver.example goes up to that user's device over the satellite; an SMS to a
user's number goes up too; a packet from a device ("<address or number> <text>") goes out as
e-mail or SMS from that user. A user directory in SQLite maps users to devices and numbers.
Everything runs here on 127.0.0.1: a local Ray, the bridge's SMTP server and SMS webhook, and
stand-ins for the outside world (a Swarm Hive API simulator, a Bandwidth-style SMS gateway
simulator, an outside mail server). Both streams are checkpointed; a packet is acknowledged
to the satellite gateway only once a checkpoint holds it.

    python examples/spacebeaver/bridge.py --scripted   # a short scenario, then exits (make demo)
    python examples/spacebeaver/bridge.py              # serves until Ctrl-C (SIGINT or SIGTERM)

On Ctrl-C it drains: the SMTP server answers 421 to new mail, messages in flight reach their
sinks, a final checkpoint is taken, then it exits.
"""

import argparse
import asyncio
import json
import signal
import sqlite3
import tempfile
from collections.abc import Sequence
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

import eventray as er
from eventray_satellite.testing import HiveSimulator
from eventray_sms.testing import SmsGatewaySimulator
from eventray_smtp.testing import SmtpSinkServer

DOMAIN = "beaver.example"
USERS = [("ann", 4101, "+15550104101"), ("raj", 4102, "+15550104102")]


class Directory:
    """Users, their devices and phone numbers, in SQLite (opened per lookup: the stages that
    use it may run in other processes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, users: list[tuple[str, int, str]]) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS users "
                       "(name TEXT PRIMARY KEY, device INTEGER UNIQUE, phone TEXT UNIQUE)")
            db.executemany("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", users)

    def find(self, column: str, value: Any) -> tuple[str, int, str]:
        with closing(sqlite3.connect(self.path)) as db:
            row = db.execute(f"SELECT name, device, phone FROM users WHERE {column} = ?",
                             (value,)).fetchone()
        if row is None:
            raise LookupError(f"no user with {column} {value!r}")
        return row


def packet_data(text: str) -> bytes:
    """At most one satellite packet (192 bytes), cut on a character boundary."""
    return text.encode()[:192].decode(errors="ignore").encode()


def uplink_steps(directory: Directory) -> tuple[Any, Any]:
    """Mail and SMS to the device of the user they are for."""

    def mail_to_device(mail: dict[str, Any]) -> dict[str, Any]:
        name, device, _ = directory.find("name", mail["rcpt_to"].split("@")[0].lower())
        data = packet_data(f"{mail['mail_from']} {mail['subject']}: {mail['text'].strip()}")
        return {"device_id": device, "data": data,
                "path": f"mail {mail['mail_from']} -> {mail['rcpt_to']} => satellite to "
                        f"{name}'s device {device}"}

    def sms_to_device(sms: dict[str, Any]) -> dict[str, Any]:
        name, device, _ = directory.find("phone", sms["to"])
        return {"device_id": device, "data": packet_data(f"{sms['from']} {sms['text']}"),
                "path": f"sms {sms['from']} -> {sms['to']} => satellite to {name}'s "
                        f"device {device}"}

    return mail_to_device, sms_to_device


def downlink_step(directory: Directory) -> Any:
    """A device's packet, "<address or number> <text>", as mail or SMS from its user."""

    def packet_to_message(packet: dict[str, Any]) -> dict[str, Any]:
        name, device, phone = directory.find("device", packet["device_id"])
        to, _, text = packet["data"].decode().partition(" ")
        path = f"packet {packet['packet_id']} from {name}'s device {device} =>"
        if "@" in to:
            mail = {"to": to, "from": f"{name}@{DOMAIN}", "subject": f"From {name}",
                    "text": text}
            return {"via": "mail", "message": mail, "path": f"{path} mail to {to}"}
        if to.startswith("+"):
            return {"via": "sms", "message": {"to": to, "from": phone, "text": text},
                    "path": f"{path} sms to {to}"}
        raise ValueError(f"packet {packet['packet_id']}: {to!r} is no address or number")

    return packet_to_message


class OutboundConfig(er.ConnectorConfig):
    mail: dict[str, Any]
    sms: dict[str, Any]


class Outbound(er.BaseSink[OutboundConfig]):
    """Sends each message through the mail or the SMS sink its ``via`` names."""

    kind = "spacebeaver-outbound"
    config_type = OutboundConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.sinks = {"mail": er.registry.build(self.config.mail, role="sink"),
                      "sms": er.registry.build(self.config.sms, role="sink")}

    async def start(self) -> None:
        for sink in self.sinks.values():
            await sink.start()

    async def write(self, batch: Sequence[er.Event]) -> None:
        failures = []
        for via, sink in self.sinks.items():
            indexes = [i for i, event in enumerate(batch) if event.value["via"] == via]
            if not indexes:
                continue
            try:
                await sink.write([batch[i].replace_value(batch[i].value["message"])
                                  for i in indexes])
            except er.RejectedEvents as rejected:
                failures += [(indexes[i], error) for i, error in rejected.failures]
            except Exception as exc:
                failures += [(i, f"{type(exc).__name__}: {exc}") for i in indexes]
        if failures:
            raise er.RejectedEvents(failures, kind=self.kind)

    async def flush(self) -> None:
        for sink in self.sinks.values():
            await sink.flush()

    async def stop(self) -> None:
        for sink in self.sinks.values():
            await sink.stop()


def trace(value: dict[str, Any]) -> None:
    print(value["path"], flush=True)


async def run_bridge(args: argparse.Namespace, store: str) -> None:
    async with HiveSimulator() as hive, SmsGatewaySimulator() as gateway, \
            SmtpSinkServer() as internet_mail, er.connect(num_cpus=2) as bus:
        directory = Directory(str(Path(store) / "users.sqlite3"))
        directory.create(USERS)
        mail_to_device, sms_to_device = uplink_steps(directory)
        hive_login = {"base_url": hive.url, "username": hive.username,
                      "password": hive.password}
        smtp_in = er.connector("smtp-source", accept_domains=[DOMAIN])
        sms_in = er.connector("sms-source")
        bus.dead_letters >> (lambda letter: print(f"dead letter: {letter.error}", flush=True))

        uplink = await (
            bus.from_source(smtp_in).map(mail_to_device)
            .union(bus.from_source(sms_in).map(sms_to_device))
            .sink({"kind": "satellite-sink", **hive_login, "application_id": 1})
            .sink(trace)
            .run("spacebeaver-uplink", checkpoint_interval=2.0, checkpoint_store=store)
        )
        downlink = await (
            bus.from_source({"kind": "satellite-source", **hive_login, "period": 200})
            .map(downlink_step(directory))
            .sink(Outbound(
                mail={"kind": "smtp-sink", "host": internet_mail.host,
                      "port": internet_mail.port, "mail_from": f"bridge@{DOMAIN}"},
                sms=gateway.sink_config(from_number=USERS[0][2])))
            .sink(trace)
            .run("spacebeaver-downlink", checkpoint_interval=2.0, checkpoint_store=store)
        )

        stop = signalled()
        smtp_host, smtp_port = await smtp_in.listening()
        webhook = await sms_in.listening()
        print(f"listening: smtp {smtp_host}:{smtp_port}, sms webhook {webhook}", flush=True)
        if args.scripted:  # until the scenario is over, or Ctrl-C
            play = asyncio.create_task(
                scenario(smtp_host, smtp_port, webhook, hive, gateway, internet_mail))
            interrupted = asyncio.create_task(stop.wait())
            await asyncio.wait({play, interrupted}, return_when=asyncio.FIRST_COMPLETED)
            for task in (play, interrupted):
                task.cancel()
            await asyncio.wait({play, interrupted})
            if not stop.is_set():
                play.result()  # a scenario that failed says why
        else:
            await stop.wait()

        smtp_in.drain()  # new mail gets 421 (SMS 503) while messages in flight go on
        sms_in.drain()
        print("draining: new mail gets 421, messages in flight go on", flush=True)
        await asyncio.gather(uplink.stop(drain=True), downlink.stop(drain=True))
        for job in (uplink, downlink):
            checkpoint = max(m["checkpoint_completed"] for m in job.metrics().values())
            print(f"{job.name}: final checkpoint {checkpoint} taken", flush=True)
        acked = ", ".join(map(str, hive.acked)) or "none"
        print(f"satellite gateway: packets acknowledged once safe: {acked}", flush=True)
        if args.record:
            record(args.record, hive, gateway, internet_mail)


async def scenario(smtp_host: str, smtp_port: int, webhook: str, hive: HiveSimulator,
                   gateway: SmsGatewaySimulator, internet_mail: SmtpSinkServer) -> None:
    """Mail in, satellite out; device packet in, mail out; SMS both ways."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "bob@example.org", f"ann@{DOMAIN}", "Trail?"
    mail.set_content("How is the hike going?")
    await aiosmtplib.send(mail, hostname=smtp_host, port=smtp_port)
    await hive.wait_for_sent(1, timeout=60)

    hive.inject(4101, "bob@example.org All good, camping at the lake tonight.")
    await internet_mail.wait_for(1, timeout=60)

    await gateway.send_inbound(webhook, from_="+15557654321", to=USERS[1][2],
                               text="Pick up milk on the way back?")
    await hive.wait_for_sent(2, timeout=60)

    hive.inject(4102, "+15557654321 Will do, see you Sunday.")
    await gateway.wait_for(1, timeout=60)


def signalled() -> asyncio.Event:
    """Set on SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def record(path: str, hive: HiveSimulator, gateway: SmsGatewaySimulator,
           internet_mail: SmtpSinkServer) -> None:
    """What the outside world got, as JSON (the end-to-end test reads it)."""
    Path(path).write_text(json.dumps({
        "satellite": [{"device_id": m.device_id, "data": m.data.decode()} for m in hive.sent],
        "packets": sorted(hive.packets), "acked": sorted(hive.acked),
        "mail": [{"from": m.message["From"], "to": m.rcpt_tos, "subject": m.subject,
                  "text": m.text} for m in internet_mail.messages],
        "sms": [{"from": m["from"], "to": m["to"], "text": m["text"]} for m in gateway.sent],
    }, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripted", action="store_true", help="play a short scenario")
    parser.add_argument("--record", help="write what the outside world got to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spacebeaver-") as store:
        asyncio.run(run_bridge(args, store))


if __name__ == "__main__":
    main()
