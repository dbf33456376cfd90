"""HTTP connectors for eventray: ``http-source``, ``webhook-source``, ``http-sink`` and
``slack-sink``; loopback servers for tests in ``eventray_http.testing``."""

from ._config import (
    BearerAuth,
    HmacAuth,
    HttpSinkConfig,
    HttpSourceConfig,
    SlackSinkConfig,
    WebhookSourceConfig,
)
from ._http_sink import HttpSink, SlackSink
from ._http_source import HttpSource
from ._webhook import WebhookSource

__all__ = [
    "BearerAuth",
    "HmacAuth",
    "HttpSink",
    "HttpSinkConfig",
    "HttpSource",
    "HttpSourceConfig",
    "SlackSink",
    "SlackSinkConfig",
    "WebhookSource",
    "WebhookSourceConfig",
]
