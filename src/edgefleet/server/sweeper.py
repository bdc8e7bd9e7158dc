"""The server's periodic sweep: lost runs back to the queue, due retries and jobs left
waiting announced, expired operator overrides ended, schedule windows opened and closed, old
jobs purged. One asyncio task per server process, started and stopped by the app's lifespan;
it sleeps its interval, or less when an override expires or a schedule's window opens or
closes sooner.

Silence is only counted from this process's start: after a server outage every worker
looks silent, and its jobs must not be re-queued before it had the time it is allowed
(a few of its own heartbeat intervals, see ``services.liveness``) to reconnect and report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool

from edgefleet.db.types import utcnow
from edgefleet.server.context import ServerContext
from edgefleet.server.events import JobsQueued, WorkerChanged
from edgefleet.server.services import schedules, sweep

log = logging.getLogger(__name__)

#: Longest time between purges of expired jobs (sooner for a short retention).
PURGE_EVERY = 60.0
#: Shortest pause between two sweeps, however soon the next override expires or window moves.
MIN_PAUSE = 0.05


class Sweeper:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.interval = context.settings.effective_sweep_interval
        self._started: datetime = utcnow()
        self._last_tick: datetime = self._started
        self._last_purge = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edgefleet-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            pause = self.interval
            try:
                pause = await run_in_threadpool(self.tick)
            except Exception:  # a failed sweep (database away) is retried at the next tick
                log.exception("job sweep failed; retrying in %.1fs", self.interval)
            await asyncio.sleep(pause)

    def tick(self) -> float:
        """One sweep; returns the seconds until the next one: the interval, or less when an
        operator's override expires (its worker adopts the layer below then) or a schedule's
        window opens or closes sooner."""
        settings, db, notifier = self.context.settings, self.context.db, self.context.notifier
        now = utcnow()
        queues: set[str] = set()
        for run in sweep.requeue_lost(db, settings.worker_offline_timeout, now, self._started):
            queues.add(run.queue)  # re-queued, or it freed a place under its queue's cap
        queues.update(sweep.queues_due(db, self._last_tick, now))
        self._last_tick = now
        wake = [JobsQueued(queue) for queue in sorted(queues)]
        overdue = now - timedelta(seconds=self.interval)
        for queue, slots in sweep.queues_waiting(db, overdue, now).items():
            if queue not in queues:
                wake.append(JobsQueued(queue, slots))
        wake += [WorkerChanged(name) for name in sweep.expire_overrides(db, now)]
        wake += [WorkerChanged(name) for name in schedules.sweep_windows(db, now)]
        notifier.announce(wake)
        retention = min(settings.job_retention, settings.audit_retention)
        purge_every = min(PURGE_EVERY, max(self.interval, retention / 4))
        if time.monotonic() - self._last_purge >= purge_every:
            self._last_purge = time.monotonic()
            self.purge(now)
        return self.pause(utcnow())

    def pause(self, now: datetime) -> float:
        moments = (
            sweep.next_override_expiry(self.context.db),
            schedules.next_boundary(self.context.db, now),
        )
        soonest = min((m for m in moments if m is not None), default=None)
        if soonest is None:
            return self.interval
        return min(self.interval, max(MIN_PAUSE, (soonest - now).total_seconds()))

    def purge(self, now: datetime) -> None:
        """Finished jobs and audit entries past their retention."""
        settings, db = self.context.settings, self.context.db
        purged = sweep.purge_finished(db, settings.job_retention, now)
        if purged:
            log.info("purged %d finished jobs older than %gs", purged, settings.job_retention)
        purged = sweep.purge_audit(db, settings.audit_retention, now)
        if purged:
            log.info("purged %d audit entries older than %gs", purged, settings.audit_retention)
