"""The one place Ray's exceptions become eventray's: a failure of Ray itself (an actor, an
object, a node or the cluster lost) is a ``TransportError`` with Ray's exception chained."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ray.exceptions import RayError, RayTaskError

from eventray import TransportError
from eventray.spi import describe


def is_ray_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is Ray failing, rather than user code that Ray ran raising."""
    return isinstance(exc, RayError) and not isinstance(exc, RayTaskError)


def transport_error(what: str, exc: BaseException) -> TransportError:
    """``exc`` (a Ray failure) as a ``TransportError`` saying what was being done."""
    error = TransportError(f"{what}: {describe(exc)}", transport="ray")
    error.__cause__ = exc
    return error


@contextmanager
def ray_errors(what: str) -> Iterator[None]:
    """Raise a Ray failure inside the block as a ``TransportError`` (``from`` it); errors of
    user code that Ray carried (``RayTaskError``) and everything else pass unchanged."""
    try:
        yield
    except RayError as exc:
        if not is_ray_failure(exc):
            raise
        raise transport_error(what, exc) from exc
