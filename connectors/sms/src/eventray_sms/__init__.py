"""SMS connectors for eventray: ``sms-source`` (a webhook for Bandwidth-style message
callbacks) and ``sms-sink`` (sends through a Bandwidth-style messages API); a gateway
simulator for tests in ``eventray_sms.testing``."""

from ._config import BasicAuth, BearerAuth, SmsSinkConfig, SmsSourceConfig
from ._sink import SmsSink
from ._source import SmsSource

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "SmsSink",
    "SmsSinkConfig",
    "SmsSource",
    "SmsSourceConfig",
]
