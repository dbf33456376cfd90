"""SMTP connectors for eventray: ``smtp-source`` (an SMTP server) and ``smtp-sink`` (sends
mail); a recording SMTP server for tests in ``eventray_smtp.testing``."""

from ._config import SmtpLogin, SmtpSinkConfig, SmtpSourceConfig
from ._mime import html_to_text
from ._smtp_sink import SmtpSink
from ._smtp_source import SmtpSource

__all__ = [
    "SmtpLogin",
    "SmtpSink",
    "SmtpSinkConfig",
    "SmtpSource",
    "SmtpSourceConfig",
    "html_to_text",
]
