"""The jobs a worker runs: start, stop on request, and account for each through the spool.

A run's life: its slots are taken, its process started (and recorded in the spool, so a
successor can kill it after a crash), its output spooled as it comes, and when it ends its
result is spooled (fsync'd) before anything is sent. The slots are given back once the server
has the result; if the worker has to leave first, the result stays in the spool and is
delivered by the next start. Nothing is reported twice: the server ignores a repeated report
of the same attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefleet.contract import (
    JobAssignment,
    JobCancel,
    JobRelease,
    JobResult,
    JobState,
    LogChunk,
    ReportedResult,
    clip_reason,
)
from edgefleet.errors import PayloadTooLarge, Refused
from edgefleet.grouping import GroupWriter
from edgefleet.worker.client import EdgeClient
from edgefleet.worker.logs import LogStreamer
from edgefleet.worker.outbox import Deliver, Delivery, Outbox
from edgefleet.worker.runner import (
    JobProcess,
    Outcome,
    job_environment,
    kill_leftover_group,
)
from edgefleet.worker.slots import SlotLimiter
from edgefleet.worker.spool import Entry, Kind, Run, Spool, process_start

log = logging.getLogger(__name__)

#: Results sent in one request at most: with the longest reasons the contract allows, a
#: batch stays well under the smallest request-body cap a server may have
#: (``settings.MIN_BODY_BYTES``), so no result is ever refused for its company's size.
RESULTS_PER_REQUEST = 64


@dataclass(eq=False)
class RunningJob:
    assignment: JobAssignment
    process: JobProcess
    seq: int | None = None
    task: asyncio.Task[None] | None = None
    streamer: LogStreamer | None = None
    #: Set once the process has ended and its result is safe in the spool.
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def attempt(self) -> int:
        return self.assignment.attempt


def run_of(assignment: JobAssignment) -> Run:
    return Run(assignment.id, assignment.attempt)


def delivery_via(client: EdgeClient) -> Deliver:
    """How each kind of spooled message reaches the server. Results that are ready together
    go in one request."""
    results = GroupWriter(client.report_results, max_group=RESULTS_PER_REQUEST)

    async def deliver(entry: Entry) -> None:
        if entry.kind is Kind.RESULT:
            await results.submit(ReportedResult(job_id=entry.job_id, **entry.body))
        elif entry.kind is Kind.LOG:
            await client.push_log(entry.job_id, LogChunk.model_validate(entry.body))
        elif entry.kind is Kind.RELEASE:
            await client.release(entry.job_id, JobRelease.model_validate(entry.body))
        else:
            raise ValueError(f"unknown message kind {entry.kind!r}")

    return deliver


def _brief(command: list[str], limit: int = 160) -> str:
    text = shlex.join(command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Executor:
    def __init__(
        self,
        hostname: str,
        spool: Spool,
        client: EdgeClient,
        limiter: SlotLimiter,
        instance_id: Callable[[], str],
        on_change: Callable[[], None],
    ) -> None:
        self.hostname = hostname
        self.spool = spool
        self.limiter = limiter
        self._instance_id = instance_id
        self._on_change = on_change
        self.jobs: dict[int, RunningJob] = {}
        self.outbox = Outbox(spool, delivery_via(client), on_refused=self._refused)

    # --- start-up ----------------------------------------------------------------------

    def recover(self) -> int:
        """Kill what a crashed predecessor left running and queue what it still owed the
        server. Returns the number of messages to replay."""
        for left in self.spool.leftovers():
            if left.pid is not None and kill_leftover_group(
                left.pid, left.start, process_start(left.pid)
            ):
                log.warning(
                    "worker %s: killed job %s (attempt %s) left running by a previous process",
                    self.hostname,
                    left.job_id,
                    left.attempt,
                )
        return self.outbox.replay()

    async def replay(self, stop: asyncio.Event) -> bool:
        """Recover, then wait until the server has what a predecessor left; False if
        ``stop`` was set first."""
        pending = self.recover()
        if not pending:
            return True
        log.info(
            "worker %s: delivering %d messages a previous process left in the spool",
            self.hostname,
            pending,
        )
        replayed = asyncio.create_task(self.wait_reported(None))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({replayed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        replayed.cancel()
        stopped.cancel()
        return not stop.is_set()

    # --- running -----------------------------------------------------------------------

    def start(self, assignment: JobAssignment, seq: int | None) -> None:
        """Run a job whose slots the caller has taken."""
        previous = self.jobs.get(assignment.id)
        if previous is not None:  # an older attempt the server re-queued: it must stop
            previous.process.kill(JobState.FAILED, "superseded by a newer attempt")
        log.info(
            "worker %s: starting job %d attempt %d: %s",
            self.hostname,
            assignment.id,
            assignment.attempt,
            _brief(assignment.command),
        )
        env = job_environment(
            os.environ,
            assignment.env,
            {
                "EDGEFLEET_JOB_ID": str(assignment.id),
                "EDGEFLEET_JOB_ATTEMPT": str(assignment.attempt),
                "EDGEFLEET_WORKER": self.hostname,
            },
        )
        streamer = LogStreamer(self._log_sink(assignment), job_id=assignment.id)

        def started(pid: int) -> None:  # recorded so a successor can kill it after a crash
            self.spool.mark_running(run_of(assignment), pid)

        process = JobProcess(
            assignment.command,
            streamer.write,
            env,
            assignment.cwd,
            assignment.timeout,
            on_start=started,
        )
        job = RunningJob(assignment, process, seq, streamer=streamer)
        job.task = asyncio.create_task(self._run(job))
        self.jobs[assignment.id] = job
        self._on_change()

    def _log_sink(self, assignment: JobAssignment):
        def sink(seq: int, text: str) -> bool:
            body = LogChunk(attempt=assignment.attempt, seq=seq, data=text).model_dump()
            return self.outbox.add(Kind.LOG, assignment.id, assignment.attempt, body) is not None

        return sink

    async def _run(self, job: RunningJob) -> None:
        a = job.assignment
        assert job.streamer is not None
        job.streamer.start()
        try:
            outcome = await job.process.run()
            await job.streamer.close()
            log.info(
                "worker %s: job %d attempt %d %s (%s)",
                self.hostname,
                a.id,
                a.attempt,
                outcome.state,
                outcome.reason or "exit 0",
            )
            delivered = self.outbox.add(Kind.RESULT, a.id, a.attempt, self._result(a, outcome))
            self.spool.clear_running(run_of(a))
            job.ended.set()
            if delivered is not None:
                await delivered
        except asyncio.CancelledError:
            pass  # the worker is leaving: what is spooled goes out at its next start
        finally:
            self.spool.clear_running(run_of(a))
            job.ended.set()
            self.limiter.release(a.slots)
            if self.jobs.get(a.id) is job:
                del self.jobs[a.id]
            self._on_change()

    def _result(self, a: JobAssignment, outcome: Outcome) -> dict:
        return JobResult(
            instance_id=self._instance_id(),
            attempt=a.attempt,
            state=outcome.state,
            exit_code=outcome.exit_code,
            reason=clip_reason(outcome.reason),
        ).model_dump(mode="json")

    def hand_back(self, assignment: JobAssignment, seq: int | None) -> None:
        """Return a claimed job unstarted (delivered through the spool like a result)."""
        log.info("worker %s: handing back job %d (no free slot)", self.hostname, assignment.id)
        body = JobRelease(instance_id=self._instance_id(), attempt=assignment.attempt, seq=seq)
        self.outbox.add(Kind.RELEASE, assignment.id, assignment.attempt, body.model_dump())

    # --- stopping ----------------------------------------------------------------------

    def cancel(self, orders: list[JobCancel]) -> None:
        """Obey the server's cancel orders (each for this attempt or an older one)."""
        for order in orders:
            job = self.jobs.get(order.id)
            if job is None or job.attempt > order.attempt or job.ended.is_set():
                continue
            if job.process.stopping:
                continue
            state = JobState.CANCELLED if order.requested else JobState.FAILED
            log.warning(
                "worker %s: stopping job %d attempt %d: %s",
                self.hostname,
                order.id,
                job.attempt,
                order.reason,
            )
            job.process.kill(state, order.reason)

    def kill_all(self, reason: str) -> int:
        """Stop every job still running; returns how many were."""
        running = [job for job in self.jobs.values() if not job.ended.is_set()]
        for job in running:
            job.process.kill(JobState.FAILED, reason)
        return len(running)

    @property
    def running(self) -> int:
        """Jobs whose process has not ended yet."""
        return sum(1 for job in self.jobs.values() if not job.ended.is_set())

    async def wait_ended(self, timeout: float | None) -> bool:
        """Wait until every process has ended and its result is spooled."""
        events = [job.ended.wait() for job in self.jobs.values() if not job.ended.is_set()]
        if not events:
            return True
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(e) for e in events], timeout=timeout
        )
        for future in pending:
            future.cancel()
        return not pending

    async def wait_reported(self, timeout: float | None) -> bool:
        """Wait until the server has every result (and anything else the spool owes)."""
        return await self.outbox.wait_empty(timeout)

    async def finish_jobs(self, deadline: float, grace: float) -> None:
        """Let running jobs end by ``deadline`` (loop time), then kill what is left; returns
        once every result is in the spool."""
        loop = asyncio.get_running_loop()
        if not self.running:
            return
        log.info(
            "worker %s: waiting up to %gs for %d running jobs",
            self.hostname,
            max(0.0, deadline - loop.time()),
            self.running,
        )
        if not await self.wait_ended(max(0.0, deadline - loop.time())):
            killed = self.kill_all(
                f"killed: the worker was stopped and its grace period of {grace:g}s ran out"
            )
            log.warning("worker %s: grace period over, killed %d jobs", self.hostname, killed)
            await self.wait_ended(None)

    async def deliver_owed(self, timeout: float) -> None:
        """Deliver what the spool holds for up to ``timeout`` seconds, then stop sending; the
        rest stays in the spool for the next start."""
        if not await self.wait_reported(timeout):
            log.warning(
                "worker %s: %d messages could not be delivered yet; they stay in the spool "
                "for the next start",
                self.hostname,
                len(self.outbox),
            )
        await self.close()

    async def close(self) -> None:
        """Leave: stop waiting for deliveries; undelivered messages stay in the spool."""
        tasks = [job.task for job in self.jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.outbox.close()

    def _refused(self, entry: Entry, exc: Refused) -> None:
        if entry.kind is Kind.LOG and isinstance(exc, PayloadTooLarge):
            job = self.jobs.get(entry.job_id)
            if job is not None and job.attempt == entry.attempt and job.streamer is not None:
                job.streamer.stop(f"the server refused more: {exc.detail}")


__all__ = ["Delivery", "Executor", "RunningJob", "delivery_via"]
