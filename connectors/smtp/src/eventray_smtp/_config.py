"""The typed configs of the SMTP connector kinds (see shared/CONNECTORS.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from eventray import ConnectorConfig

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
NonEmpty = Annotated[str, Field(min_length=1)]


class SmtpLogin(BaseModel):
    """``{"username": ..., "password": ...}``: the one login ``smtp-source`` accepts (AUTH
    LOGIN or PLAIN, offered only after STARTTLS)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    username: NonEmpty
    password: NonEmpty


def _domains(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = [domain.strip().lower().removeprefix("@") for domain in value]
    if not all(cleaned) or any("@" in d or " " in d for d in cleaned):
        raise ValueError("must be domain names such as 'example.org'")
    return cleaned


class SmtpSourceConfig(ConnectorConfig):
    """``smtp-source``: an SMTP server; one event per accepted message and recipient."""

    host: str = "127.0.0.1"
    port: Port = 0
    accept_domains: list[str] | None = None
    max_message_size: PositiveInt = 10 * 1024 * 1024
    tls_certfile: str | None = None
    tls_keyfile: str | None = Field(default=None, validate_default=True)
    auth: SmtpLogin | None = None
    hostname: NonEmpty = "localhost"
    max_recipients: PositiveInt = 100
    max_connections: PositiveInt = 100
    max_pending: PositiveInt = 1000
    handover_timeout: Positive = 30.0
    drain_timeout: Positive = 10.0
    timeout: Positive = 300.0

    _check_domains = field_validator("accept_domains")(_domains)

    @field_validator("tls_keyfile")
    @classmethod
    def _tls_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) != (info.data.get("tls_certfile") is None):
            raise ValueError("give tls_certfile and tls_keyfile together")
        return value

    @field_validator("auth")
    @classmethod
    def _tls_for_auth(cls, value: SmtpLogin | None, info: ValidationInfo) -> SmtpLogin | None:
        if value is not None and info.data.get("tls_certfile") is None:
            raise ValueError("a login is only offered over STARTTLS: give tls_certfile and "
                             "tls_keyfile too")
        return value


class SmtpSinkConfig(ConnectorConfig):
    """``smtp-sink``: one e-mail per event through the server at ``host``:``port``."""

    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, Field(gt=0, le=65535)] = 25
    mail_from: NonEmpty
    username: str | None = None
    password: str | None = Field(default=None, validate_default=True)
    starttls: bool = False
    use_tls: bool = False
    tls_ca_file: str | None = None
    validate_certs: bool = True
    local_hostname: str | None = None
    timeout: Positive = 30.0
    connections: Annotated[int, Field(gt=0, le=100)] = 2
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    backoff_initial: Positive = 0.1
    backoff_max: Positive = 10.0
    idle_timeout: Positive = 60.0

    @field_validator("mail_from")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("password")
    @classmethod
    def _login_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) != (info.data.get("username") is None):
            raise ValueError("give username and password together")
        return value

    @field_validator("use_tls")
    @classmethod
    def _one_tls(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("starttls"):
            raise ValueError("use_tls (TLS from the start) and starttls exclude each other")
        return value


__all__ = ["SmtpLogin", "SmtpSinkConfig", "SmtpSourceConfig"]
