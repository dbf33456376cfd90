"""An obstore ``S3Store`` from an ``ObjectStorageConnection``, and obstore's errors as
eventray's, in one place for the sink and the checkpoint store."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from eventray import ConnectorError
from eventray.spi import describe

from ._config import ObjectStorageConnection

if TYPE_CHECKING:  # typed dicts only in obstore's stubs
    from obstore.store import ClientConfig, RetryConfig, S3Config


def make_store(config: ObjectStorageConnection) -> S3Store:
    """A client for ``config.bucket`` (path-style requests when an endpoint is given, as
    S3-compatible servers expect; plain HTTP allowed only for an ``http://`` endpoint)."""
    s3: S3Config = {"region": config.region}
    client: ClientConfig = {
        "timeout": timedelta(seconds=config.timeout),
        "connect_timeout": timedelta(seconds=min(config.timeout, 10.0)),
    }
    if config.endpoint_url is not None:
        s3["endpoint"] = config.endpoint_url
        s3["virtual_hosted_style_request"] = False
        client["allow_http"] = config.endpoint_url.startswith("http://")
    if config.access_key_id is not None and config.secret_access_key is not None:
        s3["access_key_id"] = config.access_key_id
        s3["secret_access_key"] = config.secret_access_key
    if config.session_token is not None:
        s3["session_token"] = config.session_token
    retry: RetryConfig = {
        "max_retries": config.retries,
        "retry_timeout": timedelta(seconds=config.timeout * (config.retries + 1)),
        "backoff": {"init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=5), "base": 2},
    }
    return S3Store(config.bucket, config=s3, client_options=client, retry_config=retry)


# What obstore raises when a request fails (a missing object or bucket is a FileNotFoundError).
STORE_ERRORS = (BaseError, FileNotFoundError)


def translate(exc: Exception, kind: str, doing: str) -> ConnectorError:
    """An obstore error as a ``ConnectorError`` saying what failed; auth errors and missing
    buckets are not worth retrying."""
    permanent = isinstance(exc, PermissionDeniedError | UnauthenticatedError
                           | FileNotFoundError)
    return ConnectorError(f"{doing}: {describe(exc)}", kind=kind, retriable=not permanent)
