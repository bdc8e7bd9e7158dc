"""In-process wake-ups for workers' long-polls.

A change of a worker's desired state, or a job queued on a queue it serves, sets the events
of the long-polls waiting on it. Callers may be on the event loop or in the thread pool that
runs synchronous routes, so every wake-up is handed to the loop thread-safely. Long-polls also
re-read the database now and then, which covers changes made by another server replica.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_worker: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._by_queue: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @contextmanager
    def subscribe(self, hostname: str, queues: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set when ``hostname`` changes or a job lands on one of ``queues``."""
        event = asyncio.Event()
        queues = list(queues)
        self._by_worker[hostname].add(event)
        for queue in queues:
            self._by_queue[queue].add(event)
        try:
            yield event
        finally:
            _discard(self._by_worker, hostname, event)
            for queue in queues:
                _discard(self._by_queue, queue, event)

    def worker_changed(self, hostname: str) -> None:
        self._wake(self._by_worker, hostname)

    def job_queued(self, queue: str) -> None:
        self._wake(self._by_queue, queue)

    def _wake(self, index: defaultdict[str, set[asyncio.Event]], key: str) -> None:
        if self._loop is None or key not in index:
            return
        self._loop.call_soon_threadsafe(_set_all, index, key)


def _set_all(index: defaultdict[str, set[asyncio.Event]], key: str) -> None:
    for event in index.get(key, ()):
        event.set()


def _discard(index: defaultdict[str, set[asyncio.Event]], key: str, event: asyncio.Event) -> None:
    events = index.get(key)
    if events is not None:
        events.discard(event)
        if not events:
            del index[key]
