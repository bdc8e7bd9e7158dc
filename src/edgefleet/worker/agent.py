"""The worker process: register, heartbeat, long-poll, fetch, run, report, obey.

Three kinds of task share one event loop:
- the dispatch loop fetches jobs while slots are free and otherwise waits on a long-poll
  (``watch``) that the server answers when the desired state changes or work may be waiting;
- the heartbeat loop proves liveness and reports the worker's state; it acknowledges each
  applied desired-state version too, which with long-polls on rides on the next long-poll
  instead (no request of its own: a change to the whole fleet costs one request a worker);
- one task per running job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet.aio import wait_event
from edgefleet.backoff import Backoff
from edgefleet.contract import (
    DesiredState,
    FetchRequest,
    Heartbeat,
    JobAssignment,
    LocalMaintenance,
    Registration,
    WakeReason,
    WorkerContact,
    WorkerState,
)
from edgefleet.errors import NotRegistered, Refused, TlsFailure, Unauthorized, Unavailable
from edgefleet.fleet_rules import FLAG, accepts_work, handed_back
from edgefleet.worker.client import EdgeClient, retry_after
from edgefleet.worker.credential import EnrollmentError
from edgefleet.worker.desired_cache import DesiredCache, desired_path
from edgefleet.worker.executor import Executor
from edgefleet.worker.slots import SlotLimiter
from edgefleet.worker.spool import Spool
from edgefleet.worker.statefile import pid_alive, read_control, read_state, write_state

if TYPE_CHECKING:
    from edgefleet.worker.credential import CredentialKeeper

log = logging.getLogger(__name__)


class WorkerAlreadyRunning(RuntimeError):
    """Another live process on this machine is already this worker."""


class RegistrationRefused(RuntimeError):
    """The server will not accept this worker (bad token, duplicate, bad flags)."""


@dataclass(frozen=True)
class WorkerConfig:
    hostname: str
    concurrency: int
    queues: list[str]
    home: Path
    #: The server, or several replicas separated by commas (``edgefleet.api_urls``).
    api_url: str
    heartbeat_interval: float = 30.0
    #: Fallback fetch poll when the long-poll is off or failing.
    poll_interval: float = 5.0
    #: How long one long-poll may stay open on the server.
    watch_timeout: float = 30.0
    long_poll: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    #: On a stop, how long running jobs may take to finish before they are killed.
    grace_period: float = 600.0
    #: On a stop, how long the worker keeps trying to deliver what it owes the server before
    #: leaving it in the spool for its next start.
    report_timeout: float = 10.0


#: Errors that end the worker on purpose: the server refuses it (or its credential) for good.
#: Any other error in a long-lived loop is logged and the loop carries on.
FATAL: tuple[type[Exception], ...] = (RegistrationRefused, EnrollmentError)


class EdgeWorker:
    def __init__(
        self,
        config: WorkerConfig,
        client: EdgeClient,
        credential: CredentialKeeper | None = None,
    ) -> None:
        """``credential``: the worker's own credential, when it has one (not the secret). A
        registration refused with 401 asks it to enroll again; a 401 later stops the worker
        (``refusal`` says why)."""
        self.config = config
        self.client = client
        self._credential = credential
        #: Why the server stopped accepting this worker, once it did.
        self.refusal: str | None = None
        self.instance_id = uuid.uuid4().hex
        self.limiter = SlotLimiter(config.concurrency)
        self.desired: DesiredState | None = None
        self._desired_cache = DesiredCache(desired_path(config.home, config.hostname))
        #: True while the desired state in force is the cached one, not yet confirmed.
        self._cached = False
        self.executor = Executor(
            config.hostname,
            Spool(config.home, config.hostname),
            client,
            self.limiter,
            lambda: self.instance_id,
            self._jobs_changed,
        )
        #: Job id -> its run, until the server has its result.
        self.jobs = self.executor.jobs
        self._fetch_seq = 0
        #: A fetch whose answer was lost: sent again, same seq, until answered.
        self._pending_fetch: FetchRequest | None = None
        self._stop_requests = 0
        self._stop_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._ack = asyncio.Event()
        self._stopping = False
        self._stopped = False
        self._registered = False
        self._register_lock = asyncio.Lock()
        self._started_at = datetime.now(UTC)
        self._last_contact: datetime | None = None
        self._replaces: str | None = None
        #: Maintenance switched at the worker's own machine, in force until the centre agrees.
        self._local_maintenance: bool | None = None
        self._reported_state: WorkerState | None = None
        #: Hands an operator's concurrency back at its end (``_hand_back_when_over``).
        self._expiry: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: Waits between long-polls that fail; reset by one that is answered.
        self._watch_backoff = Backoff(base=min(0.5, config.poll_interval), cap=config.poll_interval)
        client.servers.on_move(self._server_moved)

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a shutdown request or a stop signal, then drain and leave cleanly."""
        self._claim_local_identity()
        self._adopt_cached()
        if not await self._replay_spool():
            await self.executor.close()
            return
        await self._register()
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._dispatch_loop()
            await self._drain()
        finally:
            tasks = [heartbeat, *self._background]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.executor.close()
            self._stopped = True
            try:
                await self._send_heartbeat()
            except Exception:
                log.exception("worker %s: last heartbeat failed", self.config.hostname)
            self._write_state()
            log.info("worker %s stopped", self.config.hostname)

    def request_stop(self) -> None:
        """First call: fetch no more, let running jobs finish (within the grace period).
        Second call: kill the running jobs' process groups now; they are reported as failed
        with reason "killed" and retried if they have retries left."""
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info(
                "worker %s: stopping; %d running jobs may take up to %gs to finish",
                self.config.hostname,
                self.executor.running,
                self.config.grace_period,
            )
        else:
            killed = self.executor.kill_all("killed: the worker was stopped")
            log.warning(
                "worker %s: second stop request, killing %d jobs", self.config.hostname, killed
            )
        self._stopping = True
        self._stop_event.set()
        self._wake.set()

    def request_local_maintenance(self) -> None:
        """Signal handler for SIGUSR1: act on the control file written by a local command."""
        request = read_control(self.config.home, self.config.hostname)
        if not request or "maintenance" not in request:
            return
        on = bool(request["maintenance"])
        log.info(
            "worker %s: local request: maintenance %s", self.config.hostname, "on" if on else "off"
        )
        self._local_maintenance = on
        self._wake.set()
        self._write_state()
        task = asyncio.create_task(self._forward_local_maintenance(on, request.get("comments")))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _forward_local_maintenance(self, on: bool, comments: str | None) -> None:
        """Tell the centre about a local switch, however long the server takes to answer."""
        body = LocalMaintenance(instance_id=self.instance_id, maintenance=on, comments=comments)
        backoff = Backoff(base=0.5, cap=30.0)
        while self._local_maintenance == on:
            try:
                contact = await self.client.local_maintenance(body)
            except NotRegistered as exc:  # not (yet, or no longer): the other loops register it
                log.warning("worker %s: maintenance switch waits: %s", self.config.hostname, exc)
                await asyncio.sleep(backoff.next())
                continue
            except Refused as exc:
                log.error("worker %s: maintenance switch refused: %s", self.config.hostname, exc)
                return
            except Exception as exc:  # an outage, or an answer it cannot read: try again
                log.warning(
                    "worker %s: cannot forward maintenance switch yet: %s",
                    self.config.hostname,
                    exc if isinstance(exc, Unavailable) else repr(exc),
                )
                await asyncio.sleep(max(backoff.next(), retry_after(exc)))
                continue
            self._apply(contact.desired)
            if contact.desired.maintenance == on and self._local_maintenance == on:
                self._local_maintenance = None
            return

    def _claim_local_identity(self) -> None:
        previous = read_state(self.config.home, self.config.hostname)
        if previous is None:
            return
        pid = previous.get("pid")
        if pid != os.getpid() and previous.get("state") != WorkerState.STOPPED and pid_alive(pid):
            raise WorkerAlreadyRunning(
                f"worker {self.config.hostname!r} is already running here as pid {pid}"
            )
        self._replaces = previous.get("instance_id")

    async def _register(self) -> None:
        async with self._register_lock:
            backoff = Backoff(base=0.5, cap=30.0)
            renewed = False
            while True:
                try:
                    contact = await self.client.register(self._registration())
                    break
                except Unavailable as exc:
                    if isinstance(exc, TlsFailure) and not self._registered:
                        raise  # never registered: a configuration problem, not an outage
                    if self._stopping:  # a stop must not wait for a server that may never come
                        log.warning(
                            "worker %s: stopped before it could register", self.config.hostname
                        )
                        return
                    delay = max(backoff.next(), retry_after(exc))
                    log.warning(
                        "worker %s: cannot register (%s); retrying in %.1fs",
                        self.config.hostname,
                        exc,
                        delay,
                    )
                    await wait_event(self._stop_event, delay)
                except Refused as exc:
                    if (
                        isinstance(exc, Unauthorized)
                        and self._credential is not None
                        and not renewed
                    ):
                        await self._credential.reauthenticate()  # enrolls again, or raises
                        renewed = True
                        continue
                    raise RegistrationRefused(f"server refused registration: {exc.detail}") from exc
            self._registered = True
            self._cached = False
            self._last_contact = datetime.now(UTC)
            log.info("worker %s registered (instance %s)", self.config.hostname, self.instance_id)
            self._apply(contact.desired, force=True)

    def _registration(self) -> Registration:
        return Registration(
            instance_id=self.instance_id,
            replaces=self._replaces,
            concurrency=self.config.concurrency,
            queues=self.config.queues,
            labels=self.config.labels,
            heartbeat_interval=self.config.heartbeat_interval,
            pid=os.getpid(),
            sysinfo={
                "host": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
        )

    async def _recover(self, exc: Refused) -> None:
        """After a refusal of one of the worker's own calls: register again if the server no
        longer knows this process as the worker; stop if its credential is dead."""
        if isinstance(exc, NotRegistered):
            log.warning("worker %s: %s; registering again", self.config.hostname, exc.detail)
            self._replaces = self.instance_id
            await self._register()
        elif isinstance(exc, Unauthorized) and self._credential is not None:
            self._credential_refused(exc)
        else:
            log.error("worker %s: request refused: %s", self.config.hostname, exc)

    def _credential_refused(self, exc: Unauthorized) -> None:
        """The server refuses this worker's credential (revoked, or expired unrenewed): its
        jobs are already the server's to re-queue, so kill them and stop."""
        if self.refusal is not None:
            return
        assert self._credential is not None
        self.refusal = self._credential.refused_message()
        log.error("worker %s: %s (%s)", self.config.hostname, self.refusal, exc.detail)
        self.executor.kill_all("killed: the worker's credential was refused")
        self.request_stop()

    # --- desired state --------------------------------------------------------------

    def _apply(
        self, desired: DesiredState, force: bool = False, reason: str = "by remote request"
    ) -> None:
        """Adopt the centre's desired state at once; nothing running is ever killed for it.
        ``reason`` says in the log where the state came from (the server, the cache, the
        worker's own clock)."""
        current = self.desired
        if current is not None and not force and desired.version <= current.version:
            return
        given, desired = desired, self._hand_back_when_over(desired)
        if desired is not given:
            reason += ", as the operator's value ended"
        hostname = self.config.hostname
        old_limit = self.limiter.set_limit(desired.concurrency)
        if old_limit != desired.concurrency:
            log.info(
                "worker %s: concurrency updated from %d to %d %s (%s)",
                hostname,
                old_limit,
                desired.concurrency,
                reason,
                desired.concurrency_source,
            )
        if current is not None and current.queues != desired.queues:
            log.info("worker %s: queues now %s", hostname, ",".join(desired.queues))
        if desired.maintenance and (current is None or not current.maintenance):
            log.info("worker %s: entering maintenance: %s", hostname, desired.maintenance_comment)
        if desired.shutdown and (current is None or not current.shutdown):
            log.info("worker %s: shutdown requested; finishing %d jobs", hostname, len(self.jobs))
        self.desired = desired
        if not self._cached:
            self._desired_cache.save(desired)
        if not self.config.long_poll:  # else the next long-poll acknowledges it
            self._ack.set()
        self._wake.set()
        self._write_state()

    def _hand_back_when_over(self, desired: DesiredState) -> DesiredState:
        """An operator's concurrency with an end gives way to the layer below it at that end
        on this worker's own clock, heard from the server or not (it may be out of touch,
        or running on its cache); the server's sweep ends it at the same moment."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        until, after = desired.concurrency_until, desired.concurrency_after
        if until is None or after is None:
            return desired
        left = (until - datetime.now(UTC)).total_seconds()
        if left <= 0:
            return handed_back(desired)
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(left, self._override_ended, desired)
        return desired

    def _override_ended(self, desired: DesiredState) -> None:
        self._expiry = None
        if self.desired is not desired:
            return
        log.info(
            "worker %s: the operator's concurrency %d ended at %s",
            self.config.hostname,
            desired.concurrency,
            desired.concurrency_until,
        )
        self._apply(handed_back(desired), force=True, reason="as the operator's value ended")

    def _adopt_cached(self) -> None:
        """Until the server answers, run on the desired state it last gave this worker (not
        on the start-up flags): a restart during an outage keeps the centre's settings."""
        cached = self._desired_cache.load()
        if cached is None:
            self._write_state()
            return
        log.info(
            "worker %s: until the server answers, using its last desired state (version %d, "
            "concurrency %d from %s) cached in %s",
            self.config.hostname,
            cached.version,
            cached.concurrency,
            cached.concurrency_source,
            self._desired_cache.path,
        )
        self._cached = True
        self._apply(cached, force=True, reason="from its cached desired state")

    def _exiting(self) -> bool:
        return self._stopping or (self.desired is not None and self.desired.shutdown)

    def in_maintenance(self) -> bool:
        if self._local_maintenance is not None:
            return self._local_maintenance
        return self.desired is not None and self.desired.maintenance

    def _can_fetch(self) -> bool:
        return self.desired is not None and accepts_work(
            maintenance=self.in_maintenance(),
            shutting_down=self._exiting(),
            free_slots=self.limiter.free,
        )

    def state(self) -> WorkerState:
        busy = bool(self.jobs)
        if self._stopped:
            return WorkerState.STOPPED
        if self._exiting():
            return WorkerState.SHUTDOWN_PENDING
        if self.in_maintenance():
            return WorkerState.MAINTENANCE_PENDING if busy else WorkerState.MAINTENANCE
        if not self._registered:
            return WorkerState.STARTING
        return WorkerState.RUNNING if busy else WorkerState.IDLE

    # --- dispatch -------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        """Fetch and wait for work until the worker leaves. An unexpected error (an answer it
        cannot read, a local file it cannot write) is logged and the loop starts again after
        a pause: only a stop or a final refusal ends it."""
        trouble = Backoff(base=0.5, cap=30.0)
        while not self._exiting():
            try:
                await self._dispatch()
            except FATAL:
                raise
            except Exception:
                delay = trouble.next()
                log.exception(
                    "worker %s: dispatch failed; carrying on in %.1fs", self.config.hostname, delay
                )
                await wait_event(self._stop_event, delay)

    async def _dispatch(self) -> None:
        empty_streak = 0
        may_have_work = True
        while not self._exiting():
            self._wake.clear()
            if may_have_work and self._can_fetch():
                got = await self._fetch_once()
                if got:
                    empty_streak = 0
                    continue
                empty_streak += 1
                if empty_streak > 1:  # woken for work that went elsewhere: don't spin
                    await asyncio.sleep(min(0.02 * 2**empty_streak, 1.0))
            may_have_work = await self._wait_for_work()

    async def _fetch_once(self) -> bool:
        """Claim jobs for the free slots. A fetch whose answer is lost is sent again with
        the same ``seq`` until the server answers, so jobs it claimed are never orphaned."""
        if self._pending_fetch is None:
            self._fetch_seq += 1
            self._pending_fetch = FetchRequest(
                instance_id=self.instance_id, free_slots=self.limiter.free, seq=self._fetch_seq
            )
        backoff = Backoff(base=0.2, cap=min(30.0, max(1.0, self.config.poll_interval * 4)))
        while not self._exiting():
            got = await self._send_fetch(self._pending_fetch)
            if got is not None:
                return got
            self._wake.clear()  # a stop, or another request getting through, retries at once
            await wait_event(self._wake, max(backoff.next(), self.client.paused_for("fetch")))
        return False  # stopping: _drain settles the pending fetch

    async def _send_fetch(self, request: FetchRequest) -> bool | None:
        """One try; None if the server could not be reached (the fetch stays pending)."""
        try:
            response = await self.client.fetch(request)
        except Unavailable as exc:
            log.warning("worker %s: fetch %d failed: %s", self.config.hostname, request.seq, exc)
            return None
        except Refused as exc:
            self._pending_fetch = None  # refused: it claimed nothing
            await self._recover(exc)
            return False
        self._pending_fetch = None
        self._contact_ok()
        self._apply(response.desired)
        for assignment in response.jobs:
            self._take(assignment, request.seq)
        return bool(response.jobs)

    def _take(self, assignment: JobAssignment, seq: int | None) -> None:
        if self._can_fetch() and self.limiter.try_acquire(assignment.slots):
            self.executor.start(assignment, seq)
        else:  # the limit dropped (or a stop came) while this fetch was in flight
            self.executor.hand_back(assignment, seq)

    def _contact_ok(self) -> None:
        """The server answered: note it, and let what waits for it (the outbox, a pending
        fetch) try again at once."""
        if self._pending_fetch is not None:
            self._wake.set()
        self._last_contact = datetime.now(UTC)
        self.executor.outbox.kick()

    def _server_moved(self, old: str, new: str) -> None:
        """The client left a failed server for another replica: announce this worker there
        at once (a heartbeat with its running jobs), deliver what it owes, and drop a
        long-poll still held on the old one."""
        self._ack.set()
        self._wake.set()
        self.executor.outbox.kick()
        self._write_state()

    def _obey(self, contact: WorkerContact) -> None:
        self.executor.cancel(contact.cancel)

    def _fetchable_slots(self) -> int:
        return self.limiter.free if self._can_fetch() else 0

    async def _wait_for_work(self) -> bool:
        """Block until the desired state changes, work may wait for us, or a slot frees.

        True when a fetch may find work: the server said so, a slot freed, or the server could
        not be asked. Otherwise the worker asks again without a fetch that would find nothing.
        """
        if not self.config.long_poll:
            await wait_event(self._wake, self.config.poll_interval)
            return True
        free_at_issue = self._fetchable_slots()
        moves_at_issue = self.client.servers.moves
        version = self.desired.version if self.desired else 0
        watch = asyncio.create_task(
            self.client.watch(
                self.instance_id,
                version,
                free_at_issue,
                self.config.watch_timeout,
                applied=(self.limiter.limit, self.state()),
            )
        )
        try:
            while not watch.done():
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait({watch, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if watch.done():
                    break
                self._wake.clear()
                if self._exiting() or self._fetchable_slots() > free_at_issue:
                    self._wake.set()  # let the dispatch loop see why it woke
                    return True
                if self.client.servers.moves != moves_at_issue:
                    return True  # held on a server the client has left: ask the new one
                if self.desired is not None and self.desired.version != version:
                    return False  # learnt elsewhere: the next long-poll acknowledges it
            reason = await self._on_watch_answer(watch)
        finally:
            if not watch.done():
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
        # After a change the next long-poll looks for work that now fits: no fetch needed.
        return reason in (None, WakeReason.WORK) or self._fetchable_slots() > free_at_issue

    async def _on_watch_answer(self, watch: asyncio.Task) -> WakeReason | None:
        try:
            contact = watch.result()
        except Unavailable as exc:
            log.warning("worker %s: long-poll failed: %s", self.config.hostname, exc)
            delay = max(self._watch_backoff.next(), retry_after(exc))
            await wait_event(self._wake, delay)
            return None
        except Refused as exc:
            await self._recover(exc)
            return None
        self._watch_backoff.reset()
        self._contact_ok()
        self._apply(contact.desired)
        self._obey(contact)
        return contact.reason

    # --- jobs -----------------------------------------------------------------------

    def _jobs_changed(self) -> None:
        self._wake.set()
        self._write_state()

    async def _replay_spool(self) -> bool:
        """Before registering, deliver what a previous process of this worker still owed the
        server: registration counts that process's unreported jobs as lost. Returns False if
        a stop came first (what is left stays in the spool)."""
        return await self.executor.replay(self._stop_event)

    async def _drain(self) -> None:
        """Leave cleanly: let running jobs finish within the grace period (then kill them)
        while a pending fetch is settled, then deliver what the server is owed for at most
        ``report_timeout``. A server that cannot be reached holds the stop up no longer than
        that: what it was not given stays in the spool for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_period
        settling = asyncio.create_task(self._settle_pending_fetch(deadline))
        try:
            await self.executor.finish_jobs(deadline, self.config.grace_period)
            report_by = loop.time() + self.config.report_timeout
            await asyncio.wait({settling}, timeout=self.config.report_timeout)
            if not settling.done():
                log.warning(
                    "worker %s: leaving with fetch %d unanswered; the server re-queues what "
                    "it claimed",
                    self.config.hostname,
                    self._pending_fetch.seq if self._pending_fetch else 0,
                )
            await self.executor.deliver_owed(max(0.0, report_by - loop.time()))
        finally:
            settling.cancel()
            await asyncio.gather(settling, return_exceptions=True)

    async def _settle_pending_fetch(self, deadline: float) -> None:
        """A fetch whose answer was lost may have claimed jobs: ask again, and hand them
        back, so they are not left running on a worker that is leaving."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=0.2, cap=5.0)
        while self._pending_fetch is not None and loop.time() < deadline:
            if await self._send_fetch(self._pending_fetch) is None:
                delay = max(backoff.next(), self.client.paused_for("fetch"))
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))

    # --- heartbeat ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:
            interval = self.config.heartbeat_interval * random.uniform(0.9, 1.1)
            await wait_event(self._ack, interval)
            self._ack.clear()
            try:
                await self._send_heartbeat()
            except Exception:  # never let one bad beat end the beating
                log.exception("worker %s: heartbeat failed", self.config.hostname)

    async def _send_heartbeat(self) -> None:
        desired = self.desired
        state = self.state()
        self._reported_state = state
        beat = Heartbeat(
            instance_id=self.instance_id,
            state=state,
            running_jobs=sorted(self.jobs),
            applied_version=desired.version if desired else 0,
            applied_concurrency=self.limiter.limit,
        )
        try:
            contact = await self.client.heartbeat(beat)
        except Unavailable as exc:
            log.warning("worker %s: heartbeat failed: %s", self.config.hostname, exc)
            return
        except Refused as exc:
            if not self._stopped:
                await self._recover(exc)
            return
        self._contact_ok()
        self._apply(contact.desired)
        self._obey(contact)
        self._write_state()

    # --- local state ----------------------------------------------------------------

    def _write_state(self) -> None:
        """Refresh the local state file; a changed state is also reported at once."""
        desired = self.desired
        state = self.state()
        if state != self._reported_state:
            self._ack.set()
        until = desired.concurrency_until if desired else None
        write_state(
            self.config.home,
            self.config.hostname,
            {
                "hostname": self.config.hostname,
                "pid": os.getpid(),
                "instance_id": self.instance_id,
                "state": state,
                "api_url": self.client.api_url,
                "concurrency": self.limiter.limit,
                "concurrency_source": desired.concurrency_source if desired else FLAG,
                "concurrency_until": until.isoformat() if until else None,
                "cached": self._cached,
                "queues": desired.queues if desired else self.config.queues,
                "desired_version": desired.version if desired else 0,
                "maintenance": self.in_maintenance(),
                "maintenance_comment": desired.maintenance_comment if desired else None,
                "running_jobs": sorted(self.jobs),
                "started_at": self._started_at.isoformat(),
                "last_contact": self._last_contact.isoformat() if self._last_contact else None,
            },
        )
