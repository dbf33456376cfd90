"""E-mail and text messages, bridged: mail to <number>@sms.example.org goes out as a text
message, and a text message to the bridge's number goes out as e-mail. A local SMS gateway
(Bandwidth-shaped) and a local mail server stand in for the real ones; the bridge's own SMTP
server and SMS webhook listen on free ports of 127.0.0.1.

    python examples/mail_and_sms.py          # on Ray
    python examples/mail_and_sms.py memory   # in this process
"""

import asyncio
import sys
from email.message import EmailMessage
from typing import Any

import aiosmtplib

import eventray as er
from eventray_sms.testing import SmsGatewaySimulator
from eventray_smtp.testing import SmtpSinkServer

BRIDGE_NUMBER = "+15550001111"
PHONE = "+15552223333"


def mail_to_sms(mail: dict[str, Any]) -> dict[str, Any]:
    number = mail["rcpt_to"].split("@")[0]
    return {"to": number, "text": f"{mail['subject']}: {mail['text'].strip()}"}


def sms_to_mail(sms: dict[str, Any]) -> dict[str, Any]:
    return {"to": "ops@example.org", "subject": f"SMS from {sms['from']}", "text": sms["text"]}


async def main(url: str | None = None) -> None:
    async with SmsGatewaySimulator() as gateway, SmtpSinkServer() as mail_server, \
            er.connect(url) as bus:
        smtp_in = er.connector("smtp-source", accept_domains=["sms.example.org"])
        sms_in = er.connector("sms-source", auth={"username": "bw", "password": "secret"})
        to_sms = await (
            bus.from_source(smtp_in)
            .map(mail_to_sms)
            .sink({"kind": "sms-sink", "base_url": gateway.base_url,
                   "account_id": gateway.account_id, "application_id": gateway.application_id,
                   "username": gateway.username, "password": gateway.password,
                   "from_number": BRIDGE_NUMBER})
            .run("mail-to-sms")
        )
        to_mail = await (
            bus.from_source(sms_in)
            .map(sms_to_mail)
            .sink({"kind": "smtp-sink", "host": mail_server.host, "port": mail_server.port,
                   "mail_from": "bridge@example.org"})
            .run("sms-to-mail")
        )

        host, port = await smtp_in.listening()
        mail = EmailMessage()
        mail["From"], mail["To"] = "ann@example.org", f"{PHONE}@sms.example.org"
        mail["Subject"] = "dinner"
        mail.set_content("at 7, see you there")
        await aiosmtplib.send(mail, hostname=host, port=port)
        [sms] = await gateway.wait_for(1, timeout=60)
        print(f"sms to {sms['to'][0]}: {sms['text']}")

        webhook = await sms_in.listening()
        await gateway.send_inbound(webhook, from_=PHONE, to=BRIDGE_NUMBER, text="on my way",
                                   auth=("bw", "secret"))
        [received] = await mail_server.wait_for(1, timeout=60)
        print(f"mail to {received.rcpt_tos[0]}: {received.subject}: {received.text}")

        await to_sms.stop(drain=True)
        await to_mail.stop(drain=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
