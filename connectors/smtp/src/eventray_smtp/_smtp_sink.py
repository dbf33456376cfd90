"""``smtp-sink``: one e-mail per event over pooled aiosmtplib connections.

A transient failure (a 4xx answer, a dropped connection, a timeout) is retried with
exponential backoff and jitter, at most ``retries`` times; a permanent one (a 5xx answer, a
login refused) or an event that is not a mail makes that event a dead letter while the rest
of the batch counts as delivered. When some recipients of a message are refused, the message
is sent again only to those refused with 4xx; the ones refused with 5xx are named in the
dead letter. Connections are kept open and reused (up to ``connections``; one idle for more
than ``idle_timeout`` seconds is replaced), so a stream of mail pays one handshake, not one
per message.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from eventray import BaseSink, Event, RejectedEvents
from eventray.spi import describe

from ._config import SmtpSinkConfig

log = logging.getLogger("eventray.smtp")

_TEXT_FIELDS = ("to", "subject", "text", "from", "cc", "reply_to")


class NotAMail(ValueError):
    """An event an ``smtp-sink`` cannot turn into an e-mail."""


def _addresses(value: Any, name: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise NotAMail(f"'{name}' must be an address or a list of addresses")
    for item in items:
        if "@" not in email.utils.parseaddr(item)[1]:
            raise NotAMail(f"'{name}' holds {item!r}, which is not an e-mail address")
    return items


def build_message(value: Any, mail_from: str) -> tuple[EmailMessage, list[str]]:
    """The e-mail an event's value stands for and its recipients: an ``EmailMessage`` as it
    is (``From`` defaults to ``mail_from``), or a dict ``{"to", "subject", "text"}`` with
    optional ``from``, ``cc``, ``reply_to`` and ``headers``. ``NotAMail`` says what is wrong."""
    if isinstance(value, EmailMessage):
        message = value
        if message["From"] is None:
            message = _copy(message)
            message["From"] = mail_from
    elif isinstance(value, dict):
        message = _from_dict(value, mail_from)
    else:
        raise NotAMail("an smtp-sink event is a dict {'to', 'subject', 'text'} or an "
                       f"email.message.EmailMessage, not {type(value).__name__}")
    fields = [*message.get_all("To", []), *message.get_all("Cc", []),
              *message.get_all("Bcc", [])]
    recipients = [address for _, address in email.utils.getaddresses(fields) if address]
    if not recipients:
        raise NotAMail("the message has no recipient (To, Cc or Bcc)")
    return message, recipients


def _copy(message: EmailMessage) -> EmailMessage:
    copied = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(copied, EmailMessage)
    return copied


def _from_dict(value: dict[str, Any], mail_from: str) -> EmailMessage:
    if "to" not in value:
        raise NotAMail("the event has no 'to'")
    for name in _TEXT_FIELDS[1:]:
        if name in value and not isinstance(value[name], str):
            raise NotAMail(f"'{name}' must be a string, not {type(value[name]).__name__}")
    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise NotAMail("'headers' must be a dict of header names to values")
    message = EmailMessage()
    try:
        message["From"] = value.get("from", mail_from)
        message["To"] = ", ".join(_addresses(value["to"], "to"))
        if "cc" in value:
            message["Cc"] = ", ".join(_addresses(value["cc"], "cc"))
        if "reply_to" in value:
            message["Reply-To"] = value["reply_to"]
        message["Subject"] = value.get("subject", "")
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid()
        for name, header in headers.items():
            message[str(name)] = str(header)
        message.set_content(value.get("text", ""))
    except (ValueError, TypeError) as exc:  # a header with a line break, a bad name
        raise NotAMail(describe(exc)) from None
    return message


class _Pool:
    """Up to ``size`` open connections to one server, each used by one send at a time."""

    def __init__(self, config: SmtpSinkConfig) -> None:
        self.config = config
        self.connects = 0
        self.closed = False
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(config.connections)

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, username=config.username,
            password=config.password, use_tls=config.use_tls, start_tls=config.starttls,
            validate_certs=config.validate_certs, cert_bundle=config.tls_ca_file,
            local_hostname=config.local_hostname, timeout=config.timeout,
        )
        self.connects += 1
        await client.connect()
        return client

    def _reusable(self) -> tuple[aiosmtplib.SMTP, bool] | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.config.idle_timeout:
                return client, True
            client.close()
        return None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[aiosmtplib.SMTP, bool]]:
        """An open connection and whether it was used before; it goes back to the pool
        unless the server dropped it or the send failed other than by an SMTP answer."""
        async with self._slots:
            taken = self._reusable() or (await self._connect(), False)
            client = taken[0]
            try:
                yield taken
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
                self._put_back(client)
                raise
            except BaseException:
                client.close()
                raise
            self._put_back(client)

    def _put_back(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and not self.closed:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    async def close(self) -> None:
        """Say QUIT on the idle connections; one in use is closed when its send ends."""
        self.closed = True
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await asyncio.wait_for(client.quit(), self.config.timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass  # it is closed below either way
            finally:
                client.close()


def _answer(code: int, message: str) -> str:
    return f"{code} {message}".strip()


class SmtpSink(BaseSink[SmtpSinkConfig]):
    """Sends each event as an e-mail through ``host``:``port`` (``starttls``/``use_tls``,
    ``username``/``password``), the envelope sender being ``mail_from``."""

    kind = "smtp-sink"
    config_type = SmtpSinkConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.attempts = 0
        self.sent = 0
        self._connects_before = 0  # by pools closed since
        self._pool: _Pool | None = None

    @property
    def connects(self) -> int:
        """Connections opened so far (the pool reuses them)."""
        return self._connects_before + (0 if self._pool is None else self._pool.connects)

    async def start(self) -> None:
        if self._pool is None:
            self._pool = _Pool(self.config)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._connects_before += pool.connects
            await pool.close()

    async def write(self, batch: Sequence[Event]) -> None:
        errors = await asyncio.gather(*(self._one(event.value) for event in batch))
        failures = [(index, error) for index, error in enumerate(errors) if error]
        if failures:
            raise RejectedEvents(failures, kind=self.kind)

    async def _one(self, value: Any) -> str | None:
        """Send one event's mail; None once sent, else why it was not (a dead letter)."""
        try:
            message, recipients = build_message(value, self.config.mail_from)
        except NotAMail as exc:
            return f"not a mail: {exc}"
        await self.start()
        refused: list[str] = []
        error = "not sent"
        for attempt in range(self.config.retries + 1):
            outcome = await self._attempt(message, recipients)
            if outcome is None:
                break
            error, recipients, permanent = outcome
            refused += permanent
            if not recipients:  # nothing left that a retry could deliver
                break
            if attempt < self.config.retries:
                ceiling = min(self.config.backoff_max, self.config.backoff_initial * 2**attempt)
                await asyncio.sleep(random.uniform(0, ceiling))
        else:
            return f"{error} (after {self.config.retries} retries)"
        if refused:
            return "refused: " + "; ".join(refused)
        self.sent += 1
        return None

    async def _attempt(self, message: EmailMessage,
                       recipients: list[str]) -> tuple[str, list[str], list[str]] | None:
        """One try: None when every recipient took it, else (the error, recipients to try
        again, recipients refused for good with their answers)."""
        assert self._pool is not None
        for _ in range(2):  # a pooled connection the server dropped: once more, fresh
            self.attempts += 1
            try:
                async with self._pool.connection() as (client, reused):
                    try:
                        answers, _ = await client.send_message(
                            message, sender=self.config.mail_from, recipients=recipients)
                    except aiosmtplib.SMTPServerDisconnected:
                        if reused:
                            continue
                        raise
            except aiosmtplib.SMTPRecipientsRefused as exc:
                answers = {r.recipient: aiosmtplib.SMTPResponse(r.code, r.message)
                           for r in exc.recipients}
            except aiosmtplib.SMTPResponseException as exc:
                error = _answer(exc.code, exc.message)
                if 400 <= exc.code < 500:
                    return error, recipients, []
                return error, [], [f"{', '.join(recipients)}: {error}"]
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                return describe(exc), recipients, []
            if not answers:
                return None
            again = [r for r, answer in answers.items() if 400 <= answer.code < 500]
            permanent = [f"{r}: {_answer(a.code, a.message)}" for r, a in answers.items()
                         if r not in again]
            first = next(iter(answers.values()))
            return _answer(first.code, first.message), again, permanent
        return "the server closed the connection", recipients, []
