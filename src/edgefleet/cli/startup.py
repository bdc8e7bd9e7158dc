"""What the long-running commands (``server``, ``worker``) do while they load."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a process loads its modules and builds its models.

    Start-up creates hundreds of thousands of objects that live as long as the process and
    almost no garbage; at CPython's default thresholds the collector rescanned them again
    and again: a sixth of the server's start-up CPU, and a twentieth of a worker's.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
