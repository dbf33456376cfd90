"""``er.job_params()``: the job script's side of ``JobClient.submit(..., params=...)``.

The client appends ``-k key=value ...`` to the entrypoint, each pair shell-quoted, so a value
arrives in ``sys.argv`` exactly as given (spaces, commas, ``=``, quotes, unicode).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .errors import ConfigError

FLAGS = ("-k", "--kwargs")


def job_params(argv: Sequence[str] | None = None) -> dict[str, str]:
    """The ``-k key=value ...`` pairs in ``argv`` (default ``sys.argv[1:]``) as a dict.

    A value is everything after the first ``=`` (it may hold more ``=``, commas, spaces).
    Several ``-k`` groups add up; arguments outside them are left for the script's own
    parser. A pair without ``=``, an empty key or a key given twice is a ``ConfigError``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    params: dict[str, str] = {}
    taking = False
    for arg in args:
        if arg in FLAGS:
            taking = True
            continue
        if not taking:
            continue
        key, sep, value = arg.partition("=")
        if not sep:
            if arg.startswith("-"):  # the script's own option ends the -k group
                taking = False
                continue
            raise ConfigError(f"expected key=value after -k, got {arg!r}", field="params")
        if not key or key.startswith("-"):
            if key.startswith("-") and len(key) > 1:
                taking = False  # an option such as --limit=3 ends the -k group
                continue
            raise ConfigError(f"a parameter needs a name, got {arg!r}", field="params")
        if key in params:
            raise ConfigError(f"parameter {key!r} given twice", field="params")
        params[key] = value
    return params
