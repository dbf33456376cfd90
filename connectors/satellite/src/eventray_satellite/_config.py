"""The typed configs of ``satellite-source`` and ``satellite-sink`` (see shared/CONNECTORS.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from eventray import ConnectorConfig

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonEmpty = Annotated[str, Field(min_length=1)]


def _base_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL (the Hive API's root, for "
                         "example https://bumblebee.hive.swarm.space/hive)")
    return value.rstrip("/")


class HiveLogin(ConnectorConfig):
    """Where the Hive API is and the account to log in with."""

    base_url: str
    username: NonEmpty
    password: NonEmpty = Field(repr=False)
    timeout: Positive = 10.0

    _check_url = field_validator("base_url")(_base_url)


class SatelliteSourceConfig(HiveLogin):
    """``satellite-source``: poll the Hive API every ``period`` ms for packets not yet
    acknowledged (``status=0``), ``page_size`` at a time, optionally of one ``device_id``.

    Packets are acknowledged only once safe; at most ``max_unacked`` wait for that (polling
    pauses beyond it), and the ids of the last ``dedup_window`` acknowledged packets are kept
    to drop duplicates. A poll takes at most ``max_per_poll`` packets.
    """

    period: PositiveInt = 60_000
    page_size: Annotated[int, Field(gt=0, le=1000)] = 50
    device_id: Annotated[int, Field(ge=0)] | None = None
    max_per_poll: PositiveInt = 1000
    max_unacked: PositiveInt = 10_000
    dedup_window: PositiveInt = 10_000


class SatelliteSinkConfig(HiveLogin):
    """``satellite-sink``: one ``POST /api/v1/messages`` per event ``{"device_id", "data"}``
    as ``{"deviceType", "deviceId", "userApplicationId", "data"}`` (data in base64).
    5xx, timeouts and refused connections are retried ``retries`` times with backoff; other
    4xx answers make the event a dead letter."""

    device_type: Annotated[int, Field(ge=0)] = 0
    application_id: Annotated[int, Field(ge=0, le=65535)]
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    backoff_initial: Positive = 0.1
    backoff_max: Positive = 10.0
    max_data: PositiveInt = 192  # bytes in one packet (a Swarm packet carries up to 192)


__all__ = ["HiveLogin", "SatelliteSinkConfig", "SatelliteSourceConfig"]
