"""Wake-ups for workers' long-polls, within one server process and across replicas.

A change of a worker's desired state wakes that worker's long-poll. A job queued on a queue
wakes as many idle long-polls as there are new jobs, chosen among those with enough free
slots, not every long-poll on the queue: waking a thousand idle workers for one job would
send a thousand fetches of which one wins. The sweeper announces again any job that stays
queued, so a woken worker that never fetched only delays a job, never strands it.

Callers may be on the event loop or in the thread pool that runs synchronous routes, so
every wake-up is handed to the loop thread-safely. With several replicas, a ``publish`` hook
also tells the others (PostgreSQL NOTIFY, see ``pgnotify``), and their listeners call
``wake``.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

WORKER = "w"
QUEUE = "q"

#: One wake-up as it travels between replicas: ``(kind, key, slots, count)``.
WakeUp = tuple[str, str, int, int | None]
#: Tells the other replicas about wake-ups (see ``pgnotify``).
Publisher = Callable[[list[WakeUp]], None]


@dataclass(eq=False)
class Waiter:
    """One held long-poll: what it waits on, and how much work it could take."""

    hostname: str
    free_slots: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    keys: list[tuple[str, str]] = field(default_factory=list)
    #: A newer long-poll of the same worker took over; this one should answer now.
    replaced: bool = False


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, defaultdict[str, set[Waiter]]] = {
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
    def subscribe(self, hostname: str, free_slots: int) -> Iterator[Waiter]:
        """A waiter woken when ``hostname`` changes; ``follow`` adds its queues once known.

        Subscribe before reading the state the long-poll compares against, so a change
        committed in between still wakes it. Must run on the event loop.
        """
        for older in list(self._waiters[WORKER].get(hostname, ())):
            # A worker holds one long-poll at a time. An older one is a request it gave up
            # on (a slot freed, so it fetched instead), which the server only notices when
            # it answers; a new job's wake-up must not be spent on it.
            older.replaced = True
            older.event.set()
            self._remove(older)
        waiter = Waiter(hostname, free_slots)
        self._add(waiter, WORKER, hostname)
        try:
            yield waiter
        finally:
            self._remove(waiter)

    def follow(self, waiter: Waiter, queues: Iterable[str]) -> None:
        if waiter.replaced:
            return
        for queue in queues:
            if (QUEUE, queue) not in waiter.keys:
                self._add(waiter, QUEUE, queue)

    def _add(self, waiter: Waiter, kind: str, key: str) -> None:
        self._waiters[kind][key].add(waiter)
        waiter.keys.append((kind, key))

    def _remove(self, waiter: Waiter) -> None:
        for kind, key in waiter.keys:
            waiters = self._waiters[kind].get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[kind][key]
        waiter.keys.clear()

    def worker_changed(self, hostname: str) -> None:
        self.workers_changed([hostname])

    def workers_changed(self, hostnames: Iterable[str]) -> None:
        self._announce([(WORKER, hostname, 0, None) for hostname in hostnames])

    def job_queued(self, queue: str, slots: int = 1, count: int | None = None) -> None:
        """Jobs needing ``slots`` were queued: wake ``count`` idle long-polls (all if None)."""
        self._announce([(QUEUE, queue, slots, count)])

    def _announce(self, wakeups: list[WakeUp]) -> None:
        self.wake(wakeups)
        if self.publish is not None and wakeups:
            self.publish(wakeups)

    def wake(self, wakeups: list[WakeUp]) -> None:
        """Wake the long-polls these wake-ups name; safe to call from any thread. One hand-over
        to the loop however many there are: a fleet-wide change names every worker."""
        waiting = [w for w in wakeups if w[1] in self._waiters.get(w[0], {})]
        if self._loop is not None and waiting:
            self._loop.call_soon_threadsafe(self._set_some, waiting)

    def wake_everyone(self) -> None:
        """Make every held long-poll look again: wake-ups may have been missed (a replica's
        listener reconnected). Safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set_every_event)

    def release_all(self) -> None:
        """Answer every held long-poll now; safe to call from a signal handler's thread."""
        self.closing = True
        self.wake_everyone()

    def _set_every_event(self) -> None:
        for index in self._waiters.values():
            for waiters in index.values():
                for waiter in waiters:
                    waiter.event.set()

    def _set_some(self, wakeups: list[WakeUp]) -> None:
        for kind, key, slots, count in wakeups:
            able = [w for w in self._waiters[kind].get(key, ()) if w.free_slots >= slots]
            if count is not None:
                idle = [w for w in able if not w.event.is_set()]
                able = random.sample(idle, min(count, len(idle)))
            for waiter in able:
                waiter.event.set()
