"""How the ``kafka://`` transport names its topics and turns events into records and back.

Names. An eventray topic name may hold ``/`` and ``>`` (the bus names operator topics
``<topic>><operator>``), which Kafka refuses: they become ``__sl__`` and ``__gt__``, and a
name that already holds one of those is refused, so two eventray names never share a Kafka
topic. A ``namespace`` prefixes every name with ``<namespace>.``.

Formats. The dead-letter topic is always pickled (a dead letter whose value cannot be, or
is too large, travels with that value's shortened ``repr``). Other topics: ``pickle`` (the
default) keeps any Python value and key exactly as they were published, for eventray
programs; only trusted programs should write to such topics, as unpickling runs code.
``json`` writes values as JSON and keys as text, so other Kafka clients can read and write
the topics too (values must be JSON-serializable; keys come back as str).
"""

from __future__ import annotations

import pickle
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from eventray import ConfigError, DeadLetter

from ._formats import decoder, encode_key, encoder

TopicFormat = Literal["pickle", "json"]
_ESCAPES = (("/", "__sl__"), (">", "__gt__"))
MAX_NAME = 249  # Kafka's limit


@dataclass(frozen=True, slots=True)
class Undecodable(DeadLetter):
    """A record of a ``kafka://`` topic that did not decode: a dead letter (told apart from
    dead letters that are the records of a dead-letter topic). It travels as a plain
    ``DeadLetter``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (DeadLetter, (self.value, self.error, self.stage, self.key, self.ts))


def kafka_name(name: str, namespace: str | None) -> str:
    """The Kafka topic of eventray topic ``name``."""
    for _, escape in _ESCAPES:
        if escape in name:
            raise ConfigError(f"on kafka:// a topic name cannot hold {escape!r} (it stands "
                              f"for a character Kafka refuses), got {name!r}",
                              kind="kafka", field="name")
    for char, escape in _ESCAPES:
        name = name.replace(char, escape)
    full = f"{namespace}.{name}" if namespace else name
    if len(full) > MAX_NAME:
        raise ConfigError(f"the Kafka topic {full!r} is longer than {MAX_NAME} characters",
                          kind="kafka", field="name")
    return full


def _to_pickle(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _key_to_pickle(key: Any) -> bytes | None:
    return None if key is None else _to_pickle(key)


def _from_pickle(data: bytes) -> Any:
    return pickle.loads(data)


MAX_LETTER = 256 * 1024  # bytes of a pickled dead letter; a larger value travels as its repr
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 200


def _shortened(value: Any) -> str:
    return f"<{type(value).__name__} that cannot be sent: {_short.repr(value)}>"


def encode_dead_letter(letter: Any) -> bytes:
    """A dead letter (or anything on the dead-letter topic) pickled; one whose value or key
    does not pickle, or is too large, with their shortened ``repr`` instead."""
    try:
        data = _to_pickle(letter)
    except Exception:
        data = None
    if data is not None and len(data) <= MAX_LETTER:
        return data
    if not isinstance(letter, DeadLetter):
        raise ValueError("a value on the dead-letter topic that cannot be pickled, or is "
                         f"larger than {MAX_LETTER} bytes pickled")
    key = letter.key if isinstance(letter.key, (str, bytes, int, type(None))) \
        else _shortened(letter.key)
    return _to_pickle(DeadLetter(_shortened(letter.value), letter.error, letter.stage, key,
                                 letter.ts))


def value_codec(fmt: TopicFormat) -> tuple[Callable[[Any], bytes | None],
                                          Callable[[bytes], Any]]:
    """(encode, decode) of record values in format ``fmt``."""
    if fmt == "pickle":
        return _to_pickle, _from_pickle
    return encoder("json"), decoder("json")


def key_codec(fmt: TopicFormat) -> tuple[Callable[[Any], bytes | None],
                                        Callable[[bytes], Any]]:
    """(encode, decode) of record keys in format ``fmt`` (no key stays no key)."""
    if fmt == "pickle":
        return _key_to_pickle, _from_pickle
    return encode_key, decoder("text")
