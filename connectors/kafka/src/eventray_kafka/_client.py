"""What the source and the sink share: aiokafka options from a config, starting a client
with bounded retries, and aiokafka's exceptions translated to eventray's, in one place."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError

from eventray import ConnectorError
from eventray.spi import describe

from ._config import KafkaConnection

log = logging.getLogger("eventray")


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


T = TypeVar("T", bound=_Client)


def connection_options(config: KafkaConnection) -> dict[str, Any]:
    """The aiokafka keyword arguments of the connection and security fields."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.servers,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "security_protocol": config.security_protocol,
    }
    if config.client_id is not None:
        options["client_id"] = config.client_id
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = config.ssl_context or _ssl_context(config)
    if config.sasl_mechanism is not None:
        options.update(
            sasl_mechanism=config.sasl_mechanism,
            sasl_plain_username=config.sasl_plain_username,
            sasl_plain_password=config.sasl_plain_password,
            sasl_kerberos_service_name=config.sasl_kerberos_service_name,
            sasl_kerberos_domain_name=config.sasl_kerberos_domain_name,
            sasl_oauth_token_provider=config.sasl_oauth_token_provider,
        )
    return options


def _ssl_context(config: KafkaConnection) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ssl_cafile)
    context.check_hostname = config.ssl_check_hostname
    if config.ssl_certfile:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile,
                                config.ssl_password)
    return context


async def start_client(make: Callable[[], T], config: KafkaConnection, *, kind: str,
                       timeout: float | None = None) -> T:  # noqa: ASYNC109
    """A client from ``make()``, started; a new one is tried ``connect_retries`` more times,
    with exponential backoff, while the brokers cannot be reached, then a ``ConnectorError``
    says which brokers and why. Any other failure (or ``timeout`` seconds passing) raises at
    once. A client that failed to start is always stopped."""
    attempts = config.connect_retries + 1
    for attempt in range(1, attempts + 1):
        client = make()
        try:
            async with asyncio.timeout(timeout):
                await client.start()
            return client
        except KafkaConnectionError as exc:
            await _stop_quietly(client)
            if attempt == attempts:
                raise ConnectorError(
                    f"cannot reach the Kafka brokers at {','.join(config.servers)} "
                    f"({describe(exc)}) after {attempts} attempt(s)",
                    kind=kind, retriable=True) from exc
            wait = random.uniform(0.5, 1.0) * config.retry_backoff_ms / 1000 * 2**attempt
            log.warning("%s: the Kafka brokers at %s are not reachable (%s); retrying in "
                        "%.2fs", kind, ",".join(config.servers), describe(exc), wait)
            await asyncio.sleep(wait)
        except TimeoutError as exc:
            await _stop_quietly(client)
            raise ConnectorError(f"starting took more than {timeout:g}s (brokers "
                                 f"{','.join(config.servers)})", kind=kind,
                                 retriable=True) from exc
        except KafkaError as exc:
            await _stop_quietly(client)
            raise ConnectorError(f"cannot start: {describe(exc)}", kind=kind,
                                 retriable=bool(getattr(exc, "retriable", False))) from exc
        except BaseException:
            await _stop_quietly(client)
            raise
    raise AssertionError("unreachable")


async def _stop_quietly(client: _Client) -> None:
    try:
        await client.stop()
    except Exception as exc:  # the start failure is what the caller needs to see
        log.debug("stopping a Kafka client that failed to start: %s", describe(exc))


def translate(exc: KafkaError, kind: str, doing: str) -> ConnectorError:
    """An aiokafka error as a ``ConnectorError`` saying what failed."""
    return ConnectorError(f"{doing}: {describe(exc)}", kind=kind,
                          retriable=bool(getattr(exc, "retriable", False)))
