"""A recording SMTP server for testing pipelines that send mail.

``SmtpSinkServer`` is an aiosmtpd server on 127.0.0.1 (a free port) that keeps every message
it accepts, counts connections, and can be told to answer with a 4xx or 5xx, the way a real
mail server refuses. It is an async context manager::

    async with SmtpSinkServer() as server:
        sink = er.connector("smtp-sink", host=server.host, port=server.port,
                            mail_from="bridge@example.org")
        ...
        [mail] = await server.wait_for(1)
        assert mail.subject == "hello" and mail.rcpt_tos == ["ann@example.org"]
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ._mime import message_text

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMail:
    """A message the server accepted: its envelope and content."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        return message_text(self.message).rstrip("\n")


class _Recording(SMTP):
    def __init__(self, server: SmtpSinkServer, **options: Any) -> None:
        super().__init__(server, **options)
        self.owner = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self not in self.owner._sessions:
            self.owner.connections += 1
            self.owner._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._sessions.discard(self)
        super().connection_lost(error)


class SmtpSinkServer:
    """An SMTP server on 127.0.0.1 that records what it accepts.

    ``fail_next(code, times=n, at="DATA")`` makes the next ``n`` transactions fail with
    ``code`` at that command (``"MAIL"``, ``"RCPT"`` or ``"DATA"``); ``refuse(address, code)``
    refuses one recipient for good. With ``tls_certfile``/``tls_keyfile`` it offers STARTTLS,
    and with ``login=(username, password)`` it wants AUTH (over TLS) before mail.
    """

    def __init__(self, *, tls_certfile: str | None = None, tls_keyfile: str | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.messages: list[ReceivedMail] = []
        self.connections = 0
        self.logins = 0
        self.tls_certfile = tls_certfile
        self.tls_keyfile = tls_keyfile
        self.login = login
        self._failures: deque[tuple[Stage, int, str]] = deque()
        self._refused: dict[str, tuple[int, str]] = {}
        self._server: asyncio.Server | None = None
        self._sessions: set[_Recording] = set()
        self._arrived = asyncio.Condition()

    def fail_next(self, code: int, text: str = "", *, times: int = 1,
                  at: Stage = "DATA") -> None:
        """The next ``times`` transactions are answered ``code`` at command ``at``."""
        reply = text or ("Try again later" if code < 500 else "Refused")
        self._failures.extend([(at, code, reply)] * times)

    def refuse(self, address: str, code: int = 550, text: str = "No such user") -> None:
        """Answer ``RCPT TO:<address>`` with ``code``."""
        self._refused[address.lower()] = (code, text)

    def _failure(self, stage: Stage) -> str | None:
        if self._failures and self._failures[0][0] == stage:
            _, code, text = self._failures.popleft()
            return f"{code} {text}"
        return None

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if (failure := self._failure("MAIL")) is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() in self._refused:
            code, text = self._refused[address.lower()]
            return f"{code} {text}"
        if (failure := self._failure("RCPT")) is not None:
            return failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (failure := self._failure("DATA")) is not None:
            return failure
        self.messages.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos),
                                          envelope.original_content or b""))
        async with self._arrived:
            self._arrived.notify_all()
        return "250 OK: recorded"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.login is not None and (
            auth_data.login.decode(), auth_data.password.decode()) == self.login
        self.logins += ok
        return AuthResult(success=ok, handled=False)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        context = None
        if self.tls_certfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls_certfile, self.tls_keyfile)
        options: dict[str, Any] = {"hostname": "localhost", "tls_context": context,
                                   "loop": loop, "auth_required": self.login is not None}
        if self.login is None:
            options["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        else:
            options["authenticator"] = self._authenticate
        self._server = await loop.create_server(lambda: _Recording(self, **options),
                                                self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def drop_connections(self) -> None:
        """Close every open session, as a server does to idle clients; it keeps listening."""
        handlers = [s._handler_coroutine for s in self._sessions if s._handler_coroutine]
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)

    async def stop(self) -> None:
        """Close the server and every open session."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await self.drop_connections()
        await server.wait_closed()

    async def __aenter__(self) -> SmtpSinkServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:  # noqa: ASYNC109
        """The first ``count`` messages accepted, waiting up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return self.messages[:count]


__all__ = ["ReceivedMail", "SmtpSinkServer"]
