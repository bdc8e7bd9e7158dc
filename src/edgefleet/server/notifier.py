"""Wake-ups for workers' long-polls, within one server process and across replicas.

A change of a worker's desired state, or a job queued on a queue it serves, sets the events
of the long-polls waiting on it. Callers may be on the event loop or in the thread pool that
runs synchronous routes, so every wake-up is handed to the loop thread-safely.

With several replicas, a ``publish`` hook also tells the others (PostgreSQL NOTIFY, see
``pgnotify``), and their listeners call ``wake``. Long-polls still re-read the database now
and then, so a lost notification only delays a change, never loses it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

WORKER = "w"
QUEUE = "q"

Publisher = Callable[[str, str], None]


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, defaultdict[str, set[asyncio.Event]]] = {
            WORKER: defaultdict(set),
            QUEUE: defaultdict(set),
        }
        self.publish: Publisher | None = None
        #: Set when the server is shutting down: long-polls answer at once instead of holding
        #: the graceful shutdown open until they time out.
        self.closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @contextmanager
    def subscribe(self, hostname: str, queues: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set when ``hostname`` changes or a job lands on one of ``queues``."""
        event = asyncio.Event()
        keys = [(WORKER, hostname), *((QUEUE, queue) for queue in queues)]
        for kind, key in keys:
            self._events[kind][key].add(event)
        try:
            yield event
        finally:
            for kind, key in keys:
                events = self._events[kind].get(key)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._events[kind][key]

    def worker_changed(self, hostname: str) -> None:
        self._announce(WORKER, hostname)

    def job_queued(self, queue: str) -> None:
        self._announce(QUEUE, queue)

    def _announce(self, kind: str, key: str) -> None:
        self.wake(kind, key)
        if self.publish is not None:
            self.publish(kind, key)

    def wake(self, kind: str, key: str) -> None:
        """Set the events waiting on ``key``; safe to call from any thread."""
        if self._loop is None or key not in self._events.get(kind, {}):
            return
        self._loop.call_soon_threadsafe(self._set_all, kind, key)

    def release_all(self) -> None:
        """Answer every held long-poll now; safe to call from a signal handler's thread."""
        self.closing = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set_every_event)

    def _set_every_event(self) -> None:
        for index in self._events.values():
            for events in index.values():
                for event in events:
                    event.set()

    def _set_all(self, kind: str, key: str) -> None:
        for event in self._events[kind].get(key, ()):
            event.set()
