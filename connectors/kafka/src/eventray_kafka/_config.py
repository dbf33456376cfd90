"""The typed configs of ``kafka-source`` and ``kafka-sink`` (see shared/CONNECTORS.md).

Everything is checked when the config is built, so a bad one fails before any connection:
broker addresses, the security settings as a whole (SASL fields only with a ``SASL_*``
protocol and the ones its mechanism needs, SSL files that exist, only with an SSL protocol),
compression codecs that are installed, timeouts that fit together.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from eventray import ConnectorConfig, alias_field

PositiveInt = Annotated[int, Field(gt=0)]
ValueFormat = Literal["json", "text", "bytes"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]
Compression = Literal["gzip", "snappy", "lz4", "zstd"]

_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")
_WITH_PASSWORD = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _address(entry: str) -> str:
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r} is not host:port")
    return f"{host}:{port}"


def _protocol(info: ValidationInfo) -> str | None:
    protocol = info.data.get("security_protocol")
    return protocol if isinstance(protocol, str) else None


class KafkaConnection(ConnectorConfig):
    """What both kinds need to reach the brokers: addresses, security, timeouts."""

    bootstrap_servers: str | list[str] = alias_field("bootstrap_servers", "brokers")
    client_id: str | None = None
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = Field(default=None, validate_default=True)
    sasl_plain_username: str | None = Field(default=None, validate_default=True)
    sasl_plain_password: str | None = Field(default=None, validate_default=True, repr=False)
    sasl_kerberos_service_name: str = "kafka"
    sasl_kerberos_domain_name: str | None = None
    sasl_oauth_token_provider: Any = Field(default=None, validate_default=True)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = Field(default=None, repr=False)
    ssl_check_hostname: bool = True
    ssl_context: ssl.SSLContext | None = None
    request_timeout_ms: PositiveInt = 40_000
    retry_backoff_ms: PositiveInt = 100
    connect_retries: Annotated[int, Field(ge=0, le=20)] = 3

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str | list[str]) -> str | list[str]:
        entries = value.split(",") if isinstance(value, str) else value
        if not entries or not all(entry.strip() for entry in entries):
            raise ValueError("give at least one host:port")
        addresses = [_address(entry) for entry in entries]
        return ",".join(addresses) if isinstance(value, str) else addresses

    @field_validator("sasl_mechanism")
    @classmethod
    def _mechanism(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = _protocol(info)
        if protocol is None:
            return value
        if protocol in _SASL and value is None:
            raise ValueError(f"required with security_protocol {protocol!r}")
        if protocol not in _SASL and value is not None:
            raise ValueError(f"needs security_protocol 'SASL_PLAINTEXT' or 'SASL_SSL', "
                             f"not {protocol!r}")
        return value

    @field_validator("sasl_plain_username", "sasl_plain_password")
    @classmethod
    def _credentials(cls, value: str | None, info: ValidationInfo) -> str | None:
        mechanism = info.data.get("sasl_mechanism")
        if mechanism in _WITH_PASSWORD and not value:
            raise ValueError(f"required with sasl_mechanism {mechanism!r}")
        if value is not None and mechanism not in _WITH_PASSWORD:
            raise ValueError("only used with sasl_mechanism PLAIN, SCRAM-SHA-256 or "
                             "SCRAM-SHA-512")
        return value

    @field_validator("sasl_oauth_token_provider")
    @classmethod
    def _token_provider(cls, value: Any, info: ValidationInfo) -> Any:
        mechanism = info.data.get("sasl_mechanism")
        if mechanism == "OAUTHBEARER":
            from aiokafka.abc import AbstractTokenProvider

            if not isinstance(value, AbstractTokenProvider):
                raise ValueError("required with sasl_mechanism 'OAUTHBEARER': an "
                                 "aiokafka.abc.AbstractTokenProvider")
        elif value is not None:
            raise ValueError("only used with sasl_mechanism 'OAUTHBEARER'")
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password",
                     "ssl_context")
    @classmethod
    def _tls(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = _protocol(info)
        if value is None or protocol is None:
            return value
        if protocol not in _TLS:
            raise ValueError(f"needs security_protocol 'SSL' or 'SASL_SSL', not {protocol!r}")
        if isinstance(value, str) and info.field_name != "ssl_password" \
                and not Path(value).is_file():
            raise ValueError(f"no such file: {value!r}")
        if info.field_name == "ssl_keyfile" and not info.data.get("ssl_certfile"):
            raise ValueError("needs ssl_certfile too")
        if info.field_name == "ssl_context" and any(
                info.data.get(name) for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")):
            raise ValueError("give ssl_context or the ssl_*file fields, not both")
        return value

    @property
    def servers(self) -> list[str]:
        """The bootstrap addresses as a list."""
        value = self.bootstrap_servers
        return value.split(",") if isinstance(value, str) else list(value)


class KafkaSourceConfig(KafkaConnection):
    """``kafka-source``: one event per record of ``topic`` (a name or a list of names).

    With a ``group_id`` the source is a member of that consumer group: instances (and other
    programs) with the same group share the partitions, and offsets are committed to the
    group once the events are safe. Without one it reads every partition and its position
    lives only in checkpoints. ``from_beginning`` says where a group with no committed offset
    (or a source with no group) starts: the first record, or the end.
    """

    topic: str | list[str]
    group_id: str | None = None
    from_beginning: bool = False
    value_format: ValueFormat = "json"
    deserializer: Callable[[bytes], Any] | None = None
    key_format: ValueFormat = "text"
    key_deserializer: Callable[[bytes], Any] | None = None
    commit_on_drain: bool = True
    poll_timeout_ms: PositiveInt = 100
    fetch_max_wait_ms: PositiveInt = 500
    max_partition_fetch_bytes: PositiveInt = 1024 * 1024
    session_timeout_ms: PositiveInt = 10_000
    heartbeat_interval_ms: PositiveInt = 3_000
    start_timeout_ms: PositiveInt = 60_000

    @field_validator("topic")
    @classmethod
    def _topics(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or not all(names):
            raise ValueError("give a topic name or a non-empty list of names")
        if len(set(names)) != len(names):
            raise ValueError("a topic is named twice")
        return value

    @field_validator("heartbeat_interval_ms")
    @classmethod
    def _heartbeat(cls, value: int, info: ValidationInfo) -> int:
        session = info.data.get("session_timeout_ms")
        if isinstance(session, int) and value >= session:
            raise ValueError(f"must be less than session_timeout_ms ({session})")
        return value

    @property
    def topics(self) -> list[str]:
        """The topic names as a list."""
        return [self.topic] if isinstance(self.topic, str) else list(self.topic)


class KafkaSinkConfig(KafkaConnection):
    """``kafka-sink``: one record per event to ``topic``.

    The record key is ``key`` (a field of the value, or a callable of it), else the event's
    key; its timestamp is the event's time; its headers are the event's plus ``headers``.
    Records go out in batches per partition (``max_batch_size`` bytes, compressed with
    ``compression_type``), and ``write`` returns once the brokers acknowledged them
    (``acks``), so what a sink wrote is durable. Idempotence is off by default: the test
    broker has no idempotent producer.
    """

    topic: Annotated[str, Field(min_length=1)]
    key: str | Callable[[Any], Any] | None = None
    value_format: ValueFormat = "json"
    serializer: Callable[[Any], bytes | None] | None = None
    key_serializer: Callable[[Any], bytes | None] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    acks: Literal[0, 1, -1, "all"] = "all"
    compression_type: Compression | None = alias_field("compression_type", "compression",
                                                       default=None)
    linger_ms: Annotated[int, Field(ge=0)] = 0
    max_batch_size: PositiveInt = 256 * 1024
    max_request_size: PositiveInt = Field(default=1024 * 1024, gt=0, validate_default=True)
    enable_idempotence: bool = False
    delivery_timeout_ms: PositiveInt = 120_000

    @field_validator("compression_type")
    @classmethod
    def _codec(cls, value: str | None) -> str | None:
        from aiokafka import codec

        installed = {"gzip": codec.has_gzip, "snappy": codec.has_snappy,
                     "lz4": codec.has_lz4, "zstd": codec.has_zstd}
        package = {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"}
        if value is not None and not installed[value]():
            raise ValueError(f"{value} is not installed here (pip install "
                             f"{package.get(value, value)})")
        return value

    @field_validator("max_request_size")
    @classmethod
    def _request_size(cls, value: int, info: ValidationInfo) -> int:
        batch = info.data.get("max_batch_size")
        if isinstance(batch, int) and value < batch:
            raise ValueError(f"must be at least max_batch_size ({batch})")
        return value


__all__ = ["KafkaConnection", "KafkaSinkConfig", "KafkaSourceConfig"]
