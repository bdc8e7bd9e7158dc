"""Wake-ups for workers' long-polls, within one server process and across replicas.

A change of a worker's desired state wakes that worker's long-poll. A job queued on a queue
wakes as many idle long-polls as there are new jobs, chosen among those with enough free
slots, not every long-poll on the queue: waking a thousand idle workers for one job would
send a thousand fetches of which one wins. The sweeper announces again any job that stays
queued, so a woken worker that never fetched only delays a job, never strands it.

Services say whom a change concerns with typed events (``events``); ``announce`` is the one
place those become wake-ups.

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
from enum import StrEnum
from typing import NamedTuple

from edgefleet.contract import DesiredState
from edgefleet.server.events import JobsQueued, Wake, WorkerChanged


class WakeKind(StrEnum):
    """What a long-poll waits on: its worker's changes, or work on one of its queues."""

    WORKER = "w"
    QUEUE = "q"


class WakeUp(NamedTuple):
    """One wake-up as it travels between replicas (a JSON list ``[kind, key, slots, count]``)."""

    kind: WakeKind
    key: str
    slots: int
    count: int | None


def wakeup(event: Wake) -> WakeUp:
    """The one translation of a service's event into a wake-up."""
    if isinstance(event, JobsQueued):
        return WakeUp(WakeKind.QUEUE, event.queue, event.slots, event.count)
    if isinstance(event, WorkerChanged):
        return WakeUp(WakeKind.WORKER, event.hostname, 0, None)
    raise TypeError(f"not a wake-up event: {event!r}")


#: Tells the other replicas about wake-ups (see ``pgnotify``).
Publisher = Callable[[list[WakeUp]], None]


@dataclass(eq=False)
class Waiter:
    """One held long-poll: what it waits on, and how much work it could take."""

    hostname: str
    free_slots: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    keys: list[tuple[WakeKind, str]] = field(default_factory=list)
    #: A newer long-poll of the same worker took over; this one should answer now.
    replaced: bool = False
    #: The newest desired state a change on this server handed over with its wake-up.
    news: DesiredState | None = None


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[WakeKind, defaultdict[str, set[Waiter]]] = {
            kind: defaultdict(set) for kind in WakeKind
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
        for older in list(self._waiters[WakeKind.WORKER].get(hostname, ())):
            # A worker holds one long-poll at a time. An older one is a request it gave up
            # on (a slot freed, so it fetched instead), which the server only notices when
            # it answers; a new job's wake-up must not be spent on it.
            older.replaced = True
            older.event.set()
            self._remove(older)
        waiter = Waiter(hostname, free_slots)
        self._add(waiter, WakeKind.WORKER, hostname)
        try:
            yield waiter
        finally:
            self._remove(waiter)

    def follow(self, waiter: Waiter, queues: Iterable[str]) -> None:
        if waiter.replaced:
            return
        for queue in queues:
            if (WakeKind.QUEUE, queue) not in waiter.keys:
                self._add(waiter, WakeKind.QUEUE, queue)

    def _add(self, waiter: Waiter, kind: WakeKind, key: str) -> None:
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

    def announce(self, events: Iterable[Wake]) -> None:
        """Wake the long-polls that services' events concern, here and (through ``publish``)
        on the other replicas. Call after the change committed; publishing may take a round
        trip, so not on the event loop."""
        events = list(events)
        wakeups = [wakeup(event) for event in events]
        news = {
            e.hostname: e.desired
            for e in events
            if isinstance(e, WorkerChanged) and e.desired is not None
        }
        self.wake(wakeups, news)
        if self.publish is not None and wakeups:
            self.publish(wakeups)

    def wake(self, wakeups: list[WakeUp], news: dict[str, DesiredState] | None = None) -> None:
        """Wake the long-polls these wake-ups name; safe to call from any thread. One hand-over
        to the loop however many there are: a fleet-wide change names every worker.
        ``news``: new desired states by hostname, handed to those workers' long-polls."""
        waiting = [w for w in wakeups if w.key in self._waiters.get(w.kind, {})]
        if self._loop is not None and waiting:
            self._loop.call_soon_threadsafe(self._set_some, waiting, news or {})

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

    def _set_some(self, wakeups: list[WakeUp], news: dict[str, DesiredState]) -> None:
        for kind, key, slots, count in wakeups:
            able = [w for w in self._waiters[kind].get(key, ()) if w.free_slots >= slots]
            if count is not None:
                idle = [w for w in able if not w.event.is_set()]
                able = random.sample(idle, min(count, len(idle)))
            desired = news.get(key) if kind == WakeKind.WORKER else None
            for waiter in able:
                if desired is not None and (
                    waiter.news is None or desired.version > waiter.news.version
                ):
                    waiter.news = desired
                waiter.event.set()
