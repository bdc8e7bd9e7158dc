"""Retry delays after a lost connection: exponential, capped, jittered. The worker uses it
for the server, a replica for its PostgreSQL wake-up listener.

Full jitter (a uniform draw between 0 and the exponential bound) spreads a fleet's retries
after an outage, so the server is not met by every worker at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Successive delays: ``uniform(0, min(cap, base * 2**n))`` for the n-th failure in a row,
    never below ``floor``; ``reset()`` after a success starts again from the bottom."""

    def __init__(
        self,
        base: float = 0.2,
        cap: float = 30.0,
        floor: float = 0.05,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base or floor < 0:
            raise ValueError("need 0 < base <= cap and floor >= 0")
        self.base = base
        self.cap = cap
        self.floor = floor
        self.failures = 0
        self._uniform = uniform

    def bound(self) -> float:
        """The largest delay the next failure may wait."""
        return min(self.cap, self.base * 2 ** min(self.failures, 62))

    def next(self) -> float:
        """Record one more failure and return how long to wait before trying again."""
        delay = max(self.floor, self._uniform(0.0, self.bound()))
        self.failures += 1
        return min(delay, self.cap)

    def reset(self) -> None:
        self.failures = 0
