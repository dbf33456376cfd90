"""``smtp-source``: an aiosmtpd server whose accepted messages become events.

Each accepted message is one event per recipient. A message is answered ``250`` only once its
events were handed to the stream (taken by ``read``), so an accepted mail is never lost and a
slow stream makes the server answer slower instead of queueing without bound: at most
``max_pending`` events wait (plus one message's), and each of at most ``max_connections``
sessions holds at most one message. Refusals: ``550`` for a recipient outside
``accept_domains`` (no relaying), ``552`` for a message over ``max_message_size``, ``452`` past
``max_recipients``, ``451`` when the stream did not take a message within
``handover_timeout`` (the sender retries later; nothing was accepted), ``421`` while draining.

A drain (``stop_reading``) answers ``421`` to new connections and new transactions, lets the
messages already being transmitted finish (for at most ``drain_timeout`` seconds) and hands
them to the stream, then ends. A client that disconnects while its message waits may get no
``250`` for a message the stream took: it sends it again (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from eventray import BaseSource, DeadLetter, Event
from eventray.spi import HandoverQueue, describe

from ._config import SmtpSourceConfig
from ._mime import parse

log = logging.getLogger("eventray.smtp")

STOP_GRACE = 2.0  # seconds stop() lets refused messages be answered before closing
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"


class _Refusal(asyncio.Protocol):
    """A connection the server cannot take now: greeted with ``421`` and closed."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"{self.reply}\r\n".encode())
        transport.close()


class _Session(SMTP):
    """aiosmtpd's SMTP session, with the source told which sessions are open (counted from
    when the server made the session until its connection is lost) and which messages are
    being transmitted (a drain waits for those)."""

    def __init__(self, source: SmtpSource, **options: Any) -> None:
        super().__init__(_Handler(source), **options)
        self.source = source

    def connection_lost(self, error: Exception | None) -> None:
        self.source._sessions.discard(self)
        super().connection_lost(error)

    def close_after_reply(self) -> None:
        """Close the connection once the reply being written is sent (after a 421)."""
        transport = self.transport
        if transport is not None:
            self.loop.call_soon(transport.close)

    async def smtp_DATA(self, arg: str) -> None:
        if self.source.draining and self.source._pending.closed:  # refused before the data
            await self.push(SHUTTING_DOWN)
            self.close_after_reply()
            return
        self.source._transmitting += 1
        try:
            await super().smtp_DATA(arg)
        finally:
            self.source._transmitting -= 1
            self.source._drained_if_idle()


class _Handler:
    """The aiosmtpd hooks of one server: refusals, then the handover of each message."""

    def __init__(self, source: SmtpSource) -> None:
        self.source = source

    async def handle_MAIL(self, server: _Session, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.source._draining:
            server.close_after_reply()
            return SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: _Session, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        config = self.source.config
        if self.source._draining:
            server.close_after_reply()
            return SHUTTING_DOWN
        if len(envelope.rcpt_tos) >= config.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {config.max_recipients})"
        domain = address.rpartition("@")[2].lower()
        if config.accept_domains is not None and domain not in config.accept_domains:
            return f"550 5.7.1 Relaying denied: {domain or 'no domain'} is not a domain " \
                   "this server accepts mail for"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: _Session, session: Session,
                          envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # parsing a large or hostile message takes a while: off the event loop, so the
        # server keeps answering other clients meanwhile
        events = await asyncio.to_thread(self.source._events, str(envelope.mail_from),
                                         list(envelope.rcpt_tos), raw, session.peer)
        return await self.source._hand_over(events)


class SmtpSource(BaseSource[SmtpSourceConfig]):
    """An SMTP server on ``host``:``port`` (``port=0`` picks a free one: ``port`` holds it
    once listening); each accepted message becomes one event per recipient, valued
    ``{"mail_from", "rcpt_to", "subject", "text", "headers", "raw"}`` with ``key`` the
    recipient."""

    kind = "smtp-source"
    config_type = SmtpSourceConfig
    runs_in_driver = True  # it listens on this machine, where the program that owns it is

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.port: int | None = None
        self.accepted = 0
        self.refused: dict[int, int] = {}
        self._pending: HandoverQueue[Event] = HandoverQueue(self.config.max_pending)
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._transmitting = 0  # sessions in DATA: receiving a message or handing it over
        self._handing_over = 0
        self._answered: asyncio.Event | None = None  # set once no handover waits
        self._draining = False
        self._drain_deadline: asyncio.TimerHandle | None = None
        self._up: asyncio.Event | None = None  # made on first use: the source may be pickled

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` where the server listens (once started)."""
        assert self.port is not None, "the smtp-source is not listening yet"
        return self.config.host, self.port

    @property
    def draining(self) -> bool:
        """New mail is answered 421 (``drain`` or ``stop`` was called)."""
        return self._draining

    @property
    def transmitting(self) -> int:
        """Messages being received or waiting for the stream (a drain waits for them)."""
        return self._transmitting

    @property
    def pending(self) -> int:
        """Events waiting for the stream to take them (their senders wait for the 250)."""
        return len(self._pending)

    def _listening(self) -> asyncio.Event:
        if self._up is None:
            self._up = asyncio.Event()
        return self._up

    async def listening(self) -> tuple[str, int]:
        """Wait until the server listens (a stream or topic starts it); ``(host, port)``."""
        await self._listening().wait()
        return self.address

    def _tls_context(self) -> ssl.SSLContext | None:
        config = self.config
        if config.tls_certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
        return context

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        config = self.config
        options: dict[str, Any] = {
            "data_size_limit": config.max_message_size,
            "enable_SMTPUTF8": True,
            "hostname": config.hostname,
            "ident": "eventray",
            "tls_context": self._tls_context(),
            "timeout": config.timeout,
            "auth_required": config.auth is not None,
            "loop": loop,
        }
        if config.auth is None:
            options["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        else:
            options["authenticator"] = self._authenticate

        def session() -> asyncio.Protocol:
            if self._draining:
                return _Refusal(SHUTTING_DOWN)
            if len(self._sessions) >= config.max_connections:
                return _Refusal("421 4.7.0 Too many connections, try again later")
            # counted at once (not in connection_made, which comes later): connections
            # accepted together cannot all pass the check above
            accepted = _Session(self, **options)
            self._sessions.add(accepted)
            return accepted

        self._server = await loop.create_server(session, config.host, config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening().set()

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        login = self.config.auth
        if login is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user_ok = hmac.compare_digest(auth_data.login, login.username.encode())
        password_ok = hmac.compare_digest(auth_data.password, login.password.encode())
        return AuthResult(success=user_ok and password_ok, handled=False)

    def _events(self, mail_from: str, recipients: list[str], raw: bytes,
                peer: Any) -> list[Event]:
        headers = {"smtp-peer": f"{peer[0]}:{peer[1]}"} if isinstance(peer, tuple) else {}
        try:
            fields = parse(raw)
        except Exception as exc:  # a message the parser cannot read is a dead letter
            return [Event(DeadLetter({"mail_from": mail_from, "rcpt_to": rcpt, "raw": raw},
                                     describe(exc), self.kind), key=rcpt, headers=headers)
                    for rcpt in recipients]
        return [Event({"mail_from": mail_from, "rcpt_to": rcpt, **fields,
                       "headers": dict(fields["headers"])}, key=rcpt, headers=dict(headers))
                for rcpt in recipients]

    def _refuse(self, reply: str) -> str:
        code = int(reply[:3])
        self.refused[code] = self.refused.get(code, 0) + 1
        return reply

    async def _hand_over(self, events: list[Event]) -> str:
        """Queue a message's events and wait until the stream took them: the reply."""
        self._handing_over += 1
        try:
            taken = await self._pending.offer(events, self.config.handover_timeout)
        finally:
            self._handing_over -= 1
            if self._handing_over == 0 and self._answered is not None:
                self._answered.set()
        if not taken:
            if self._draining:
                return self._refuse(SHUTTING_DOWN)
            return self._refuse("451 4.3.0 The stream did not take the message in time, "
                                "try again later")
        self.accepted += 1
        return f"250 OK: {len(events)} event(s) queued"

    async def read(self, max_events: int) -> Sequence[Event] | None:
        return await self._pending.take(max_events)

    def drain(self) -> None:
        """Answer ``421`` to new connections and transactions; messages being transmitted
        may finish (for up to ``drain_timeout`` seconds) and are handed to the stream; then
        ``read`` returns what is queued, then None."""
        if self._draining:
            return
        self._draining = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running: nothing can be in flight
            self._end_drain()
            return
        self._drain_deadline = loop.call_later(self.config.drain_timeout, self._end_drain)
        self._drained_if_idle()

    def _drained_if_idle(self) -> None:
        if self._draining and self._transmitting == 0:
            self._end_drain()

    def _end_drain(self) -> None:
        """No more messages: later handovers are refused with 421."""
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None
        self._pending.close()

    def stop_reading(self) -> None:
        """A stream drains: ``drain``."""
        self.drain()

    async def stop(self) -> None:
        """``drain`` at once (messages the stream has not taken are refused with 421, so
        their senders retry), close the server and every session (one still sending its
        message is cut off: it got no 250, so its sender retries)."""
        self.drain()
        self._end_drain()
        self._pending.refuse_queued()
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._handing_over:  # let the refused messages be answered before closing
            self._answered = asyncio.Event()
            try:
                await asyncio.wait_for(self._answered.wait(), STOP_GRACE)
            except TimeoutError:
                pass
        handlers = [s._handler_coroutine for s in self._sessions if s._handler_coroutine]
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
        await server.wait_closed()
