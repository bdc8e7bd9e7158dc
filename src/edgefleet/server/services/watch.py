"""One look of a worker's long-poll: should it answer now, and with what?

Everything the long-poll compares is read in one read-only transaction, with statements
built once: a change to the whole fleet wakes every long-poll, and each look then costs the
server one short read rather than ORM work and several trips through the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import bindparam, exists, or_, select

from edgefleet.contract import DesiredState, JobCancel, JobState, WakeReason
from edgefleet.db.models import Job, Worker
from edgefleet.db.session import Sessions
from edgefleet.db.types import UTCDateTime, utcnow
from edgefleet.errors import NotFound
from edgefleet.server.services import dispatch
from edgefleet.server.services.workers import DESIRED_COLUMNS, check_instance, desired_state

_worker, _job = Worker.__table__, Job.__table__

_WORKER = select(_worker.c.hostname, _worker.c.instance_id, *DESIRED_COLUMNS).where(
    _worker.c.hostname == bindparam("hostname")
)
#: An operator cancelled a run of this worker that it has not been told of yet.
_NEW_CANCEL = select(
    exists().where(
        _job.c.worker_hostname == bindparam("hostname"),
        _job.c.state == JobState.RUNNING.value,
        _job.c.cancel_requested_at.is_not(None),
        _job.c.cancel_notified.is_(False),
    )
)
#: A due queued job on one of the worker's queues fits its free slots.
_WORK = select(
    exists().where(
        _job.c.state == JobState.QUEUED.value,
        _job.c.queue.in_(bindparam("queues", expanding=True)),
        _job.c.slots <= bindparam("free_slots"),
        or_(
            _job.c.not_before.is_(None),
            _job.c.not_before <= bindparam("now", type_=UTCDateTime()),
        ),
    )
)


@dataclass(frozen=True)
class Look:
    desired: DesiredState
    #: None: nothing for the worker yet, keep waiting.
    reason: WakeReason | None
    cancel: list[JobCancel] = field(default_factory=list)


def look(db: Sessions, hostname: str, instance_id: str, version: int, free_slots: int) -> Look:
    with db.reader.connect() as connection:
        worker = connection.execute(_WORKER, {"hostname": hostname}).one_or_none()
        if worker is None:
            raise NotFound(f"no worker named {hostname!r}")
        check_instance(worker, instance_id)
        desired = desired_state(worker)
        changed = desired.version != version
        # Only a busy worker has runs to cancel; only one with free slots can take work.
        cancelled = free_slots < desired.concurrency and connection.scalar(
            _NEW_CANCEL, {"hostname": hostname}
        )
        work = (
            not (changed or cancelled)
            and free_slots > 0
            and connection.scalar(
                _WORK, {"queues": desired.queues, "free_slots": free_slots, "now": utcnow()}
            )
        )
    cancel = dispatch.take_new_cancels(db, hostname) if cancelled else []
    if changed:
        return Look(desired, WakeReason.CHANGED, cancel)
    if cancel:
        return Look(desired, WakeReason.CANCEL, cancel)
    return Look(desired, WakeReason.WORK if work else None)
