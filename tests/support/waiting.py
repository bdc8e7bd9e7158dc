"""Polling with a deadline: the only way tests wait for something to happen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Message = str | Callable[[], str] | None


class WaitTimeout(AssertionError):
    """The condition did not become true before the deadline."""


def _describe(message: Message, last: object, error: BaseException | None, timeout: float) -> str:
    text = message() if callable(message) else (message or "condition")
    detail = f"not met within {timeout:g}s: {text} (last value: {last!r})"
    if error is not None:
        detail += f"; last ignored error: {error!r}"
    return detail


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: Message = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy.

    Returns that value. Raises ``WaitTimeout`` (an AssertionError) after ``timeout`` seconds;
    ``message`` (a string, or a callable for text computed at failure time, e.g. log tails)
    says what was awaited. Exceptions of the types in ``ignore`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            last = predicate()
        except ignore as exc:
            error = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise WaitTimeout(_describe(message, last, error, timeout))
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 30.0,
    interval: float = 0.02,
    message: Message = None,
) -> T:
    """``wait_until`` for coroutines: the predicate may be sync or async; sleeps don't block."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last) or isinstance(last, asyncio.Future):
            last = await last
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise WaitTimeout(_describe(message, last, None, timeout))
        await asyncio.sleep(interval)
