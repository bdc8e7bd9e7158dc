"""Slot accounting against a limit the operator can change while jobs run."""

from __future__ import annotations


class SlotLimiter:
    """Counts concurrency slots in use against a mutable limit.

    Unlike a semaphore, the limit may drop below what is in use: nothing running is touched,
    ``free`` is simply 0 until enough jobs end. All calls happen on the worker's event loop,
    so taking slots is atomic without a lock.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.in_use = 0

    @property
    def free(self) -> int:
        return max(0, self.limit - self.in_use)

    def try_acquire(self, slots: int = 1) -> bool:
        if slots < 1 or slots > self.free:
            return False
        self.in_use += slots
        return True

    def release(self, slots: int = 1) -> None:
        if slots > self.in_use:
            raise ValueError(f"releasing {slots} slots but only {self.in_use} are in use")
        self.in_use -= slots

    def set_limit(self, limit: int) -> int:
        """Change the limit, returning the old one."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        old, self.limit = self.limit, limit
        return old
