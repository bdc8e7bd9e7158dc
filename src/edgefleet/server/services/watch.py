"""One look of a worker's long-poll: should it answer now, and with what?

Everything the long-poll compares is read in one session, so a waiting fleet costs the
server one short read per wake-up instead of several trips through the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.contract import DesiredState, JobCancel, WakeReason
from edgefleet.server.services import dispatch
from edgefleet.server.services.workers import check_instance, desired_state, get_worker


@dataclass(frozen=True)
class Look:
    desired: DesiredState
    #: None: nothing for the worker yet, keep waiting.
    reason: WakeReason | None
    cancel: list[JobCancel] = field(default_factory=list)


def look(
    db: sessionmaker[Session], hostname: str, instance_id: str, version: int, free_slots: int
) -> Look:
    with db() as session:
        worker = get_worker(session, hostname)
        check_instance(worker, instance_id)
        desired = desired_state(worker)
        # Only a busy worker has runs to cancel; only one with free slots can take work.
        cancelled = free_slots < desired.concurrency and dispatch.has_new_cancels(session, hostname)
        changed = desired.version != version
        work = (
            not (changed or cancelled)
            and free_slots > 0
            and dispatch.queued_job_fits(session, desired.queues, free_slots)
        )
    cancel = dispatch.take_new_cancels(db, hostname) if cancelled else []
    if changed:
        return Look(desired, WakeReason.CHANGED, cancel)
    if cancel:
        return Look(desired, WakeReason.CANCEL, cancel)
    return Look(desired, WakeReason.WORK if work else None)
