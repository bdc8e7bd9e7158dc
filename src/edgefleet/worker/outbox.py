"""Delivers the spool's messages to the server: in order per job attempt, retried until the
server answers, whatever the outage.

Each job attempt is a lane: its log chunks and then its result go out one at a time, in the
order written, so the server never sees a result before the output that preceded it. Lanes
run side by side (a few requests at once). A lane that cannot reach the server backs off
(exponential, jittered) and tries again; ``kick()`` (called when another request to the
server succeeds) cuts the wait short. A refusal (``Refused``, a 4xx) is final: the message is
dropped, and after ``PayloadTooLarge`` for a log chunk the lane drops its remaining log chunks
as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, NamedTuple

from edgefleet.aio import wait_event
from edgefleet.backoff import Backoff
from edgefleet.errors import PayloadTooLarge, Refused, Unavailable
from edgefleet.worker.client import retry_after
from edgefleet.worker.spool import Entry, Kind, Run, Spool

log = logging.getLogger(__name__)

Deliver = Callable[[Entry], Awaitable[None]]
#: Called with the entry and the refusal when the server refuses a message.
OnRefused = Callable[[Entry, Refused], None]

#: Requests to the server the outbox has in flight at most.
PARALLEL = 8
#: After this many failures in a row a lane logs its retries only now and then.
QUIET_AFTER = 3


class Delivery(StrEnum):
    DELIVERED = "delivered"
    REFUSED = "refused"


class Queued(NamedTuple):
    """A spooled message waiting in its lane, with the future that tells how it ended."""

    entry: Entry
    future: asyncio.Future[Delivery]


class Outbox:
    def __init__(
        self,
        spool: Spool,
        deliver: Deliver,
        *,
        on_refused: OnRefused | None = None,
        parallel: int = PARALLEL,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        self.spool = spool
        self._deliver = deliver
        self._on_refused = on_refused
        self._slots = asyncio.Semaphore(parallel)
        self._backoff = (backoff_base, backoff_cap)
        self._lanes: dict[Run, deque[Queued]] = {}
        self._tasks: dict[Run, asyncio.Task[None]] = {}
        #: Runs whose log chunks the server refused as too large: the rest are dropped.
        self._no_more_logs: set[Run] = set()
        self._kick = asyncio.Event()
        self._changed = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._lanes.values())

    def pending_jobs(self) -> set[int]:
        return {run.job_id for run in self._lanes}

    # --- adding ----------------------------------------------------------------------

    def replay(self) -> int:
        """Queue what a previous process of this worker left in the spool."""
        entries = self.spool.load()
        for entry in entries:
            self._enqueue(entry)
        return len(entries)

    def add(
        self, kind: Kind, job_id: int, attempt: int, body: dict[str, Any]
    ) -> asyncio.Future[Delivery] | None:
        """Spool a message and send it as soon as its lane allows; the future tells how it
        ended. None: a log chunk the spool had no room for (dropped)."""
        if kind == Kind.LOG and Run(job_id, attempt) in self._no_more_logs:
            return None
        entry = self.spool.put(kind, job_id, attempt, body)
        if entry is None:
            return None
        return self._enqueue(entry)

    def _enqueue(self, entry: Entry) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(entry.lane, deque()).append(Queued(entry, future))
        if not self._closed and entry.lane not in self._tasks:
            self._tasks[entry.lane] = asyncio.create_task(self._run_lane(entry.lane))
        self._changed.set()
        return future

    # --- control ---------------------------------------------------------------------

    def kick(self) -> None:
        """The server answered something else: lanes waiting out a backoff try again now."""
        self._kick.set()
        self._kick = asyncio.Event()

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until every message was delivered or refused; False if ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._lanes:
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
            elif not await wait_event(self._changed, max(0.0, deadline - loop.time())):
                return not self._lanes
        return True

    async def close(self) -> None:
        """Stop sending; what is left stays in the spool for the next start."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in self._lanes.values():
            for queued in queue:
                if not queued.future.done():
                    queued.future.cancel()

    # --- delivery --------------------------------------------------------------------

    async def _run_lane(self, lane: Run) -> None:
        queue = self._lanes[lane]
        backoff = Backoff(*self._backoff)
        try:
            while queue:
                entry, future = queue[0]
                outcome = await self._send(entry, backoff)
                if outcome is None:
                    continue  # not delivered yet: backed off, try again
                try:
                    self.spool.remove(entry)
                except OSError:  # sent again later: the server keeps a message once
                    log.exception("job %d: cannot remove a delivered %s", entry.job_id, entry.kind)
                    await wait_event(self._kick, backoff.next())
                    continue
                queue.popleft()
                if not future.done():
                    future.set_result(outcome)
        finally:
            self._tasks.pop(lane, None)
            if not queue:
                self._lanes.pop(lane, None)
                self._no_more_logs.discard(lane)
            self._changed.set()

    async def _send(self, entry: Entry, backoff: Backoff) -> Delivery | None:
        if entry.kind is Kind.LOG and entry.lane in self._no_more_logs:
            return Delivery.REFUSED
        try:
            async with self._slots:
                await self._deliver(entry)
        except Unavailable as exc:
            delay = max(backoff.next(), retry_after(exc))
            if backoff.failures <= QUIET_AFTER or backoff.failures % 10 == 0:
                log.warning(
                    "job %d: %s for attempt %d not delivered (%s); retry %d in %.1fs",
                    entry.job_id,
                    entry.kind,
                    entry.attempt,
                    exc,
                    backoff.failures,
                    delay,
                )
            await wait_event(self._kick, delay)
            return None
        except Refused as exc:
            self._refused(entry, exc)
            return Delivery.REFUSED
        except Exception:  # a message that cannot even be sent (corrupt): never retry it
            log.exception("job %d: dropping undeliverable %s", entry.job_id, entry.kind)
            return Delivery.REFUSED
        if backoff.failures:
            log.info(
                "job %d: %s delivered after %d retries", entry.job_id, entry.kind, backoff.failures
            )
        backoff.reset()
        return Delivery.DELIVERED

    def _refused(self, entry: Entry, exc: Refused) -> None:
        if entry.kind is Kind.LOG:
            if isinstance(exc, PayloadTooLarge):
                self._no_more_logs.add(entry.lane)
            log.warning("job %d: log chunk refused: %s", entry.job_id, exc)
        else:
            log.error(
                "job %d: %s for attempt %d refused: %s",
                entry.job_id,
                entry.kind,
                entry.attempt,
                exc,
            )
        if self._on_refused is not None:
            with contextlib.suppress(Exception):
                self._on_refused(entry, exc)
