"""Worker registration, heartbeats and the views operators read of the fleet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import TypeAdapter
from sqlalchemy import Connection, Row, Update, bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import (
    DesiredState,
    JobState,
    Registration,
    WorkerState,
    WorkerView,
)
from edgefleet.db.models import Job, Worker
from edgefleet.db.types import UTCDateTime, utcnow
from edgefleet.errors import Conflict, EdgefleetError, NotFound, Unauthorized
from edgefleet.server.services import credentials, layers, lifecycle, liveness, targets

if TYPE_CHECKING:
    from edgefleet.server.services.heartbeats import Beat

#: States a worker reports about itself; the server adds unknown and offline from silence.
LIVE_STATES = frozenset(
    {
        WorkerState.STARTING,
        WorkerState.IDLE,
        WorkerState.RUNNING,
        WorkerState.MAINTENANCE_PENDING,
        WorkerState.MAINTENANCE,
        WorkerState.SHUTDOWN_PENDING,
    }
)


def desired_state(worker: Worker | Row) -> DesiredState:
    """From a ``Worker``, or a row of its ``DESIRED_COLUMNS``."""
    return DesiredState.model_validate(desired_fields(worker))


#: Many desired states validated as one list (a fleet-wide change wakes a thousand workers):
#: cheaper than building each, even with ``model_construct``.
DESIRED_STATES = TypeAdapter(list[DesiredState])


def desired_fields(worker: Any) -> dict[str, Any]:
    """A worker's desired state as the fields of a ``DesiredState``."""
    until = fleet_rules.concurrency_until(worker)
    return {
        "version": worker.desired_version,
        "concurrency": fleet_rules.concurrency(worker),
        "concurrency_source": fleet_rules.concurrency_source(worker),
        "concurrency_until": until,
        "concurrency_after": None if until is None else fleet_rules.concurrency_below(worker),
        "concurrency_after_source": None if until is None else fleet_rules.source_below(worker),
        "queues": fleet_rules.queues(worker),
        "maintenance": worker.maintenance_requested,
        "maintenance_comment": worker.maintenance_comment,
        "shutdown": worker.shutdown_requested,
    }


_worker = Worker.__table__
DESIRED_COLUMNS = [
    _worker.c[name]
    for name in (
        "desired_version",
        "concurrency_override",
        "concurrency_override_until",
        "flag_concurrency",
        "layer_concurrency",
        "layer_source",
        "queues_override",
        "flag_queues",
        "maintenance_requested",
        "maintenance_comment",
        "shutdown_requested",
    )
]


def observed_state(worker: Worker, now: datetime, offline_timeout: float) -> WorkerState:
    """The state to show: what the worker reported, unless it has gone quiet (the rule is
    ``liveness``'s, the one the sweep loses a worker's runs by)."""
    if worker.revoked_at is not None:
        return WorkerState.REVOKED
    reported = WorkerState(worker.reported_state)
    if reported not in LIVE_STATES or worker.last_heartbeat is None:
        return reported
    interval = worker.heartbeat_interval
    if liveness.is_offline(worker.last_heartbeat, interval, now, offline_timeout):
        return WorkerState.OFFLINE
    if liveness.silence(worker.last_heartbeat, now) > liveness.unknown_after(interval):
        return WorkerState.UNKNOWN
    return reported


def get_worker(session: Session, hostname: str, *, lock: bool = False) -> Worker:
    worker = session.get(Worker, hostname, with_for_update=lock or None)
    if worker is None:
        raise _unknown(hostname)
    return worker


def check_instance(worker: Worker | Row, instance_id: str) -> None:
    """Refuse calls from a worker process that has been replaced by a newer registration."""
    refused = refusal(worker, worker.hostname, instance_id)
    if refused is not None:
        raise refused


def refusal(worker: Worker | Row | None, hostname: str, instance_id: str) -> EdgefleetError | None:
    """Why a call from process ``instance_id`` of worker ``hostname`` is refused, given its
    row: an unknown worker (404), a revoked one (401), or a process replaced by a newer
    registration (409)."""
    if worker is None:
        return _unknown(hostname)
    if worker.revoked_at is not None:
        return revoked(hostname)
    if worker.instance_id != instance_id:
        return Conflict(
            f"worker {worker.hostname!r} is registered to another process "
            f"(instance {worker.instance_id}); register again"
        )
    return None


def revoked(hostname: str) -> Unauthorized:
    return Unauthorized(
        f"worker {hostname!r} was revoked: enroll it again with a new join token "
        "(`edgefleet token create-join` on the server, then `edgefleet worker --join-token`)"
    )


def _unknown(hostname: str) -> NotFound:
    return NotFound(f"no worker named {hostname!r}")


def register(
    db: sessionmaker[Session], hostname: str, reg: Registration, offline_timeout: float
) -> DesiredState:
    """Create or take over the worker row for a newly started worker process."""
    now = utcnow()
    with db.begin() as session:
        worker = session.get(Worker, hostname, with_for_update=True)
        # Labels from the worker's join token are the operator's word: they win.
        labels = {**reg.labels, **credentials.enrolled_labels(session, hostname)}
        layers.take_rules_lock(session, shared=True)
        rules = layers.load(session)
        if worker is None:
            worker = Worker(
                hostname=hostname,
                flag_concurrency=reg.concurrency,
                flag_queues=list(reg.queues),
                first_online=now,
                labels=labels,
            )
            session.add(worker)
            session.flush()
            # A standing rule it joins under is audited, as a change of labels is later on.
            layers.refresh(session, [worker], rules, "server", bump=False)
        else:
            if worker.revoked_at is not None:
                raise revoked(hostname)
            _refuse_live_duplicate(worker, reg, now, offline_timeout)
            before = desired_state(worker)
            worker.flag_concurrency = reg.concurrency
            worker.flag_queues = list(reg.queues)
            worker.shutdown_requested = False
            worker.labels = labels
            layers.refresh(session, [worker], rules, "server", bump=False)
            if desired_state(worker).model_dump(exclude={"version"}) != before.model_dump(
                exclude={"version"}
            ):
                worker.desired_version += 1
            if worker.instance_id != reg.instance_id:
                _fail_orphaned_jobs(session, hostname, now)
                worker.fetch_seq = 0  # the new process numbers its fetches from 1
        worker.instance_id = reg.instance_id
        worker.pid = reg.pid
        worker.sysinfo = dict(reg.sysinfo)
        worker.heartbeat_interval = reg.heartbeat_interval
        worker.reported_state = WorkerState.STARTING
        worker.started_at = now
        worker.last_heartbeat = now
        worker.applied_version = 0
        worker.applied_concurrency = None
        worker.applied_at = None
        session.flush()
        return desired_state(worker)


def _refuse_live_duplicate(
    worker: Worker, reg: Registration, now: datetime, offline_timeout: float
) -> None:
    if worker.instance_id in (None, reg.instance_id, reg.replaces):
        return
    if observed_state(worker, now, offline_timeout) not in LIVE_STATES | {WorkerState.UNKNOWN}:
        return
    raise Conflict(
        f"worker {worker.hostname!r} is already online (pid {worker.pid}, last heartbeat "
        f"{worker.last_heartbeat:%H:%M:%S}); stop it first or use another --edge-hostname"
    )


def _fail_orphaned_jobs(session: Session, hostname: str, now: datetime) -> None:
    """Jobs a previous process of this worker claimed can no longer be reported by anyone
    (the new process replays its predecessor's spooled results before registering): they are
    lost, and retried if they may be."""
    why = "the worker restarted while the job was running"
    lifecycle.lose_running_jobs(session, hostname, why, now)


def _beat_statement() -> Update:
    """Record a beat, built once: a fleet sends thousands of beats a second and each only
    binds new values. Guarded by the instance, so a replaced process's beat changes nothing."""
    now = bindparam("beat_now", type_=UTCDateTime())
    return (
        update(_worker)
        .where(
            _worker.c.hostname == bindparam("beat_hostname"),
            _worker.c.instance_id == bindparam("beat_instance"),
        )
        .values(
            last_heartbeat=now,
            **_applied(
                bindparam("beat_version"),
                bindparam("beat_concurrency"),
                now,
                bindparam("beat_state"),
            ),
        )
    )


def _applied(version, concurrency, now, state) -> dict[str, Any]:
    """An acknowledgement's values, with the state the worker reported with it: they only
    move forward. A beat sent before its worker learnt a version may land after that
    version's acknowledgement came with a long-poll; a new process starts again from 0
    (``register``)."""
    old = _worker.c.applied_version
    # Every right-hand side sees the row as it was, so these compare the old version.
    return {
        "reported_state": case((version >= old, state), else_=_worker.c.reported_state),
        "applied_concurrency": case(
            (version >= old, concurrency), else_=_worker.c.applied_concurrency
        ),
        "applied_at": case((version > old, now), else_=_worker.c.applied_at),
        "applied_version": case((version > old, version), else_=old),
    }


def _ack_statement() -> Update:
    """Record an acknowledgement that came without a heartbeat (on a long-poll or a fetch):
    the applied version and concurrency and the state the worker is in with them (so
    ``--wait`` never sees a maintenance acknowledged before the worker says it drains),
    guarded by the instance like a beat."""
    version = bindparam("ack_version")
    return (
        update(_worker)
        .where(
            _worker.c.hostname == bindparam("ack_hostname"),
            _worker.c.instance_id == bindparam("ack_instance"),
            _worker.c.applied_version < version,
        )
        .values(
            **_applied(
                version,
                bindparam("ack_concurrency"),
                bindparam("ack_now", type_=UTCDateTime()),
                bindparam("ack_state"),
            )
        )
    )


_BEAT = _beat_statement()
_ACK = _ack_statement()


class Ack(NamedTuple):
    """A worker process's acknowledgement of the desired version it applied."""

    hostname: str
    instance_id: str
    version: int
    concurrency: int
    state: WorkerState


def record_acks(connection: Connection, acks: list[Ack]) -> None:
    """Acknowledgements as one multi-row update, on a connection in a write transaction. One
    from a replaced process, or for a version already acknowledged, changes nothing."""
    now = utcnow()
    connection.execute(
        _ACK,
        [
            {
                "ack_hostname": ack.hostname,
                "ack_instance": ack.instance_id,
                "ack_version": ack.version,
                "ack_concurrency": ack.concurrency,
                "ack_state": ack.state.value,
                "ack_now": now,
            }
            for ack in acks
        ],
    )


#: What a worker call is checked and answered with, for the workers named ``hostnames``.
DESIRED_OF = select(
    _worker.c.hostname,
    _worker.c.instance_id,
    _worker.c.revoked_at,
    _worker.c.applied_version,
    *DESIRED_COLUMNS,
).where(_worker.c.hostname.in_(bindparam("hostnames", expanding=True)))


def record_heartbeats(
    connection: Connection, beats: list[Beat]
) -> list[DesiredState | EdgefleetError]:
    """The fleet's hot path: a group of beats as one multi-row update and one read of the
    desired states, on a connection in a write transaction. Each beat is answered with its
    worker's desired state, or why it was refused: unknown worker (404) or a replaced
    process (409)."""
    now = utcnow()
    connection.execute(
        _BEAT,
        [
            {
                "beat_now": now,
                "beat_version": beat.heartbeat.applied_version,
                "beat_hostname": beat.hostname,
                "beat_instance": beat.heartbeat.instance_id,
                "beat_state": beat.heartbeat.state.value,
                "beat_concurrency": beat.heartbeat.applied_concurrency,
            }
            for beat in beats
        ],
    )
    hostnames = list({beat.hostname for beat in beats})
    rows = {row.hostname: row for row in connection.execute(DESIRED_OF, {"hostnames": hostnames})}
    answers: list[DesiredState | EdgefleetError] = []
    for beat in beats:
        row = rows.get(beat.hostname)
        refused = refusal(row, beat.hostname, beat.heartbeat.instance_id)
        answers.append(desired_state(row) if refused is None else refused)
    return answers


def current_desired(db: sessionmaker[Session], hostname: str, instance_id: str) -> DesiredState:
    with db() as session:
        worker = get_worker(session, hostname)
        check_instance(worker, instance_id)
        return desired_state(worker)


class Running(NamedTuple):
    """What runs on one worker: jobs, and the concurrency slots they take."""

    jobs: int = 0
    slots: int = 0


def running_slots(session: Session, hostnames: list[str] | None = None) -> dict[str, Running]:
    query = (
        select(Job.worker_hostname, func.count(Job.id), func.sum(Job.slots))
        .where(Job.state == JobState.RUNNING)
        .group_by(Job.worker_hostname)
    )
    if hostnames is not None:
        query = query.where(Job.worker_hostname.in_(hostnames))
    return {
        hostname: Running(count, int(slots or 0))
        for hostname, count, slots in session.execute(query)
    }


def worker_view(
    worker: Worker, running: Running, now: datetime, offline_timeout: float
) -> WorkerView:
    return WorkerView(
        hostname=worker.hostname,
        state=observed_state(worker, now, offline_timeout),
        queues=fleet_rules.queues(worker),
        labels=dict(worker.labels),
        concurrency=fleet_rules.concurrency(worker),
        concurrency_source=fleet_rules.concurrency_source(worker),
        concurrency_rule=rule_in_force(worker),
        concurrency_until=fleet_rules.concurrency_until(worker),
        concurrency_schedule=schedule_in_force(worker),
        flag_concurrency=worker.flag_concurrency,
        applied_concurrency=worker.applied_concurrency,
        desired_version=worker.desired_version,
        applied_version=worker.applied_version,
        applied_at=worker.applied_at,
        converged=worker.applied_version == worker.desired_version,
        jobs_running=running.jobs,
        slots_used=running.slots,
        maintenance_comment=worker.maintenance_comment,
        pid=worker.pid,
        instance_id=worker.instance_id,
        started_at=worker.started_at,
        last_heartbeat=worker.last_heartbeat,
    )


def rule_in_force(worker: Worker) -> str | None:
    """The label rule that sets the worker's concurrency, if one does."""
    in_force = fleet_rules.concurrency_source(worker) == fleet_rules.LABEL_RULE
    return worker.layer_rule if in_force else None


def schedule_in_force(worker: Worker) -> str | None:
    """The schedule whose open window sets the worker's concurrency, if one does."""
    in_force = fleet_rules.concurrency_source(worker) == fleet_rules.SCHEDULE
    return worker.layer_rule if in_force else None


@dataclass(frozen=True)
class WorkerFilter:
    """``list-workers`` filters; each one given narrows the list further."""

    states: frozenset[WorkerState] = frozenset()
    hostname: str | None = None  # exact name or glob
    queues: frozenset[str] = frozenset()  # serves any of these
    selector: dict[str, str] = field(default_factory=dict)

    def keeps(self, worker: Worker, view: WorkerView) -> bool:
        if self.states and view.state not in self.states:
            return False
        if self.queues and not self.queues.intersection(view.queues):
            return False
        return fleet_rules.matches(worker.hostname, worker.labels, self.hostname, self.selector)


#: Up to this many workers listed, their running jobs are counted by name (else for all).
FEW_WORKERS = 500


def list_workers(
    db: sessionmaker[Session], offline_timeout: float, filters: WorkerFilter | None = None
) -> list[WorkerView]:
    filters = filters or WorkerFilter()
    now = utcnow()
    with db() as session:
        query = select(Worker).order_by(Worker.hostname)
        if filters.hostname is not None and not fleet_rules.is_glob(filters.hostname):
            query = query.where(Worker.hostname == filters.hostname)
        else:
            query = query.where(*targets.narrowing(filters.hostname, filters.selector))
        workers = session.scalars(query).all()
        few = len(workers) <= FEW_WORKERS
        running = running_slots(session, [w.hostname for w in workers] if few else None)
        views = []
        for worker in workers:
            view = worker_view(
                worker, running.get(worker.hostname, Running()), now, offline_timeout
            )
            if filters.keeps(worker, view):
                views.append(view)
        return views


def show_worker(db: sessionmaker[Session], hostname: str, offline_timeout: float) -> WorkerView:
    with db() as session:
        worker = get_worker(session, hostname)
        running = running_slots(session, [hostname])
        return worker_view(worker, running.get(hostname, Running()), utcnow(), offline_timeout)
