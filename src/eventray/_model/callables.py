"""Telling what a user's callable is, and naming it in messages."""

from __future__ import annotations

import functools
import inspect


def is_async_callable(target: object) -> bool:
    """Whether calling ``target`` returns a coroutine (functions, partials, callable objects)."""
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - we want the bound method
    return call is not None and inspect.iscoroutinefunction(call)


def describe_target(target: object) -> str:
    """A short human name for a subscriber or operator."""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return str(name) if name else type(target).__name__
