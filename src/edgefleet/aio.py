"""Small asyncio helpers shared by the server and the worker."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set.

    ``asyncio.timeout`` is used rather than ``wait_for``, which on Python 3.11 can swallow a
    cancellation that arrives as the event is set, leaving a task that never stops.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
