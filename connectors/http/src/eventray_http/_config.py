"""The typed configs of the HTTP connector kinds (see shared/CONNECTORS.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventray import ConnectorConfig, alias_field

from ._formats import ValueFormat

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class HttpSourceConfig(ConnectorConfig):
    """``http-source``: poll ``url`` every ``period`` milliseconds (Rayvens' field)."""

    url: str
    period: PositiveInt = 1000
    method: Method = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Positive = 10.0
    value_format: ValueFormat = "text"

    _check_url = field_validator("url")(_http_url)


class _Auth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class BearerAuth(_Auth):
    """``{"bearer": token}``: requests carry ``Authorization: Bearer <token>``."""

    bearer: Annotated[str, Field(min_length=1)]


class HmacAuth(_Auth):
    """``{"hmac_sha256": secret, "header": name}``: requests carry the hex HMAC-SHA256 of
    their body (optionally prefixed ``sha256=``) in header ``name``."""

    hmac_sha256: Annotated[str, Field(min_length=1)]
    header: str = "X-Signature-256"


class WebhookSourceConfig(ConnectorConfig):
    """``webhook-source``: an HTTP server taking one event per POST (or per JSON array item
    with ``batch=True``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    path: str = "/"
    auth: BearerAuth | HmacAuth | None = None
    max_body: PositiveInt = 1024 * 1024
    value_format: ValueFormat = "json"
    batch: bool = False
    max_pending: PositiveInt = 1000
    handover_timeout: Positive = 30.0

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value


class HttpSinkConfig(ConnectorConfig):
    """``http-sink``: one request per event (or per batch with ``batch=True``)."""

    url: str
    method: Method = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    batch: bool = False
    timeout: Positive = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    concurrency: PositiveInt = 8
    backoff_initial: Positive = 0.1
    backoff_max: Positive = 10.0
    max_retry_after: Positive = 60.0

    _check_url = field_validator("url")(_http_url)


class SlackSinkConfig(ConnectorConfig):
    """``slack-sink``: each event posted as ``{"channel", "text"}`` to an incoming webhook."""

    webhook_url: str = alias_field("webhook_url", "webhookUrl")
    channel: str | None = None
    timeout: Positive = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    backoff_initial: Positive = 0.1
    backoff_max: Positive = 10.0
    max_retry_after: Positive = 60.0

    _check_url = field_validator("webhook_url")(_http_url)


__all__ = [
    "BearerAuth",
    "HmacAuth",
    "HttpSinkConfig",
    "HttpSourceConfig",
    "SlackSinkConfig",
    "WebhookSourceConfig",
]
