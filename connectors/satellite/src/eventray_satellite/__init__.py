"""Swarm Hive satellite connectors for eventray: ``satellite-source`` (packets from devices,
acknowledged only once safe) and ``satellite-sink`` (messages to devices); a Hive API
simulator for tests in ``eventray_satellite.testing``."""

from ._config import SatelliteSinkConfig, SatelliteSourceConfig
from ._sink import SatelliteSink
from ._source import SatelliteSource

__all__ = ["SatelliteSink", "SatelliteSinkConfig", "SatelliteSource", "SatelliteSourceConfig"]
