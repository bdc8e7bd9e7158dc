"""An event loop whose clock jumps ahead whenever it would otherwise sit idle.

Everything that waits through the loop (``asyncio.sleep``, ``asyncio.timeout``, ``call_later``)
sees time pass at once, so hours of retries run in moments while the code under test stays
unchanged. Only in-process I/O belongs under it (``httpx.MockTransport``, no subprocesses):
a wait on real I/O would be skipped rather than waited for.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _SkippingSelector(selectors.DefaultSelector):
    """Polls for I/O; when none is ready and the loop would sleep until a timer, moves the
    loop's clock to that timer instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # nothing scheduled: only real I/O (a thread's answer) can come
            return super().select(None)
        self.skipped += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._skipping = _SkippingSelector()
        super().__init__(self._skipping)

    def time(self) -> float:
        return time.monotonic() + self._skipping.skipped


def run_in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a fresh ``VirtualClockLoop``."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
