"""The typed configs of the SMS connector kinds (see shared/CONNECTORS.md)."""

from __future__ import annotations

import re
from base64 import b64encode
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventray import ConnectorConfig

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonEmpty = Annotated[str, Field(min_length=1)]

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def phone_number(value: str) -> str:
    """``value`` if it is an E.164 number (``+`` and 7 to 15 digits), else ``ValueError``."""
    if not E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number such as '+15551234567'")
    return value


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + b64encode(f"{username}:{password}".encode()).decode()


class _Auth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class BasicAuth(_Auth):
    """``{"username": ..., "password": ...}``: callbacks carry HTTP basic auth (what
    Bandwidth sends when the application has callback credentials)."""

    username: NonEmpty
    password: NonEmpty


class BearerAuth(_Auth):
    """``{"bearer": token}``: callbacks carry ``Authorization: Bearer <token>``."""

    bearer: NonEmpty


class SmsSourceConfig(ConnectorConfig):
    """``sms-source``: a webhook for Bandwidth-style message callbacks; one event per
    inbound message."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    path: str = "/callbacks/messages"
    auth: BasicAuth | BearerAuth | None = None
    delivery_reports: bool = False
    max_body: PositiveInt = 1024 * 1024
    max_pending: PositiveInt = 1000
    max_concurrent_callbacks: PositiveInt = 64
    handover_timeout: Positive = 30.0

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value


class SmsSinkConfig(ConnectorConfig):
    """``sms-sink``: one message per event through a Bandwidth-style messages API
    (``POST {base_url}/users/{account_id}/messages``)."""

    base_url: str
    account_id: NonEmpty
    application_id: NonEmpty
    username: NonEmpty
    password: NonEmpty
    from_number: str
    timeout: Positive = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    concurrency: PositiveInt = 4
    backoff_initial: Positive = 0.1
    backoff_max: Positive = 10.0

    _check_from = field_validator("from_number")(phone_number)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


__all__ = ["BasicAuth", "BearerAuth", "SmsSinkConfig", "SmsSourceConfig", "phone_number"]
