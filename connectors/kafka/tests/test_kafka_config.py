"""kafka-source and kafka-sink configs: checked when built, errors naming the field."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

import eventray as er
from eventray_kafka import KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig

BS = {"bootstrap_servers": "127.0.0.1:9092"}


def test_kinds_are_registered_with_rayvens_aliases() -> None:
    source = er.connector("kafka-source", brokers="h1:9092,h2:9093", topic=["a", "b"],
                          group_id="g")
    assert isinstance(source, KafkaSource)
    assert source.config.servers == ["h1:9092", "h2:9093"]
    assert source.config.topics == ["a", "b"]
    sink = er.registry.build({"kind": "kafka-sink", "brokers": ["h:1"], "topic": "t",
                              "compression": "gzip"})
    assert isinstance(sink, KafkaSink)
    assert sink.config.compression_type == "gzip"
    assert isinstance(KafkaSourceConfig(**BS, topic="t"), KafkaSourceConfig)
    assert KafkaSink(KafkaSinkConfig(**BS, topic="t")).config.acks == "all"


SOURCE_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"topic": "t"}, "bootstrap_servers", "Field required"),
    ({**BS, "bootstrap_servers": "nohost", "topic": "t"}, "bootstrap_servers",
     "'nohost' is not host:port"),
    ({**BS, "bootstrap_servers": "", "topic": "t"}, "bootstrap_servers", "at least one"),
    ({**BS, "topic": []}, "topic", "non-empty list"),
    ({**BS, "topic": ["a", "a"]}, "topic", "named twice"),
    ({**BS, "topic": "t", "grup_id": "g"}, "grup_id", "did you mean 'group_id'"),
    ({**BS, "topic": "t", "value_format": "xml"}, "value_format", "'json', 'text' or"),
    ({**BS, "topic": "t", "from_beginning": "yes"}, "from_beginning", "valid boolean"),
    ({**BS, "topic": "t", "deserializer": "json"}, "deserializer", "callable"),
    ({**BS, "topic": "t", "heartbeat_interval_ms": 20_000}, "heartbeat_interval_ms",
     "less than session_timeout_ms (10000)"),
    ({**BS, "topic": "t", "security_protocol": "SASL_SSL"}, "sasl_mechanism",
     "required with security_protocol 'SASL_SSL'"),
    ({**BS, "topic": "t", "sasl_mechanism": "PLAIN"}, "sasl_mechanism",
     "needs security_protocol 'SASL_PLAINTEXT' or 'SASL_SSL', not 'PLAINTEXT'"),
    ({**BS, "topic": "t", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
      "sasl_plain_username": "u"}, "sasl_plain_password",
     "required with sasl_mechanism 'PLAIN'"),
    ({**BS, "topic": "t", "security_protocol": "SASL_PLAINTEXT",
      "sasl_mechanism": "OAUTHBEARER"}, "sasl_oauth_token_provider", "AbstractTokenProvider"),
    ({**BS, "topic": "t", "sasl_plain_username": "u"}, "sasl_plain_username",
     "only used with sasl_mechanism"),
    ({**BS, "topic": "t", "ssl_cafile": "/etc/hosts"}, "ssl_cafile",
     "needs security_protocol 'SSL' or 'SASL_SSL'"),
    ({**BS, "topic": "t", "security_protocol": "SSL", "ssl_cafile": "/no/such.pem"},
     "ssl_cafile", "no such file: '/no/such.pem'"),
    ({**BS, "topic": "t", "security_protocol": "SSL", "ssl_keyfile": "/etc/hosts"},
     "ssl_keyfile", "needs ssl_certfile too"),
    ({**BS, "topic": "t", "security_protocol": "SSL", "ssl_cafile": "/etc/hosts",
      "ssl_context": ssl.create_default_context()}, "ssl_context", "not both"),
]


@pytest.mark.parametrize(("fields", "field", "message"), SOURCE_ERRORS)
def test_source_config_errors_name_the_field(fields: dict[str, Any], field: str,
                                             message: str) -> None:
    with pytest.raises(er.ConfigError, match=f"^kafka-source: field '{field}': ") as caught:
        er.connector("kafka-source", **fields)
    assert caught.value.field == field
    assert message in str(caught.value)


SINK_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({**BS}, "topic", "Field required"),
    ({**BS, "topic": ""}, "topic", "at least 1 character"),
    ({**BS, "topic": "t", "acks": 2}, "acks", "0, 1, -1 or 'all'"),
    ({**BS, "topic": "t", "compression": "brotli"}, "compression_type", "'gzip'"),
    ({**BS, "topic": "t", "key": 3}, "key", "callable"),
    ({**BS, "topic": "t", "linger_ms": -1}, "linger_ms", "greater than or equal to 0"),
    ({**BS, "topic": "t", "max_batch_size": 2_000_000}, "max_request_size",
     "at least max_batch_size (2000000)"),
    ({**BS, "topic": "t", "headers": {"a": b"x"}}, "headers", "valid string"),
]


@pytest.mark.parametrize(("fields", "field", "message"), SINK_ERRORS)
def test_sink_config_errors_name_the_field(fields: dict[str, Any], field: str,
                                           message: str) -> None:
    with pytest.raises(er.ConfigError, match=f"^kafka-sink: field '{field}': ") as caught:
        er.connector("kafka-sink", **fields)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_security_settings_that_fit_together(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until connecting")
    source = KafkaSource(**BS, topic="t", security_protocol="SASL_SSL",
                         sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="user",
                         sasl_plain_password="s3cret", ssl_cafile=str(ca))
    assert source.config.ssl_cafile == str(ca)
    assert "s3cret" not in repr(source), "passwords stay out of reprs and logs"


def test_the_compression_codec_must_be_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import codec

    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    with pytest.raises(er.ConfigError, match=r"field 'compression_type': .*zstd is not "
                       r"installed here \(pip install cramjam\)"):
        KafkaSink(**BS, topic="t", compression_type="zstd")
