"""Bad satellite configs fail when they are built, naming the kind and the field."""

from __future__ import annotations

from typing import Any

import pytest

import eventray as er

SOURCE = {"kind": "satellite-source", "base_url": "http://127.0.0.1:9", "username": "u",
          "password": "p"}
SINK = {**SOURCE, "kind": "satellite-sink", "application_id": 1}


@pytest.mark.parametrize(("config", "field", "words"), [
    ({**SOURCE, "base_url": "hive.example"}, "base_url", "http"),
    ({**SOURCE, "period": "1000"}, "period", "integer"),
    ({**SOURCE, "period": 0}, "period", "greater than 0"),
    ({**SOURCE, "page_size": 5000}, "page_size", "1000"),
    ({**SOURCE, "password": ""}, "password", "at least 1"),
    ({**SOURCE, "device_id": -2}, "device_id", "greater than or equal"),
    ({**SOURCE, "pagesize": 5}, "pagesize", "did you mean 'page_size'"),
    ({k: v for k, v in SOURCE.items() if k != "username"}, "username", "required"),
    ({k: v for k, v in SINK.items() if k != "application_id"}, "application_id", "required"),
    ({**SINK, "application_id": 70000}, "application_id", "65535"),
    ({**SINK, "retries": 100}, "retries", "20"),
])
def test_bad_fields_are_named(config: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(er.ConfigError) as failed:
        er.connector(config["kind"], **{k: v for k, v in config.items() if k != "kind"})
    message = str(failed.value)
    assert config["kind"] in message and f"'{field}'" in message and words in message


def test_the_password_is_not_shown() -> None:
    fields = {k: v for k, v in SINK.items() if k != "kind"}
    sink = er.connector("satellite-sink", **{**fields, "password": "hunter2"})
    assert "hunter2" not in repr(sink) and "password" not in repr(sink)
