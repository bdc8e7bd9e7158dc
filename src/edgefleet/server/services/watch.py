"""One look of a worker's long-poll: should it answer now, and with what?

Everything the long-poll compares is read in one read-only transaction, with statements
built once: a change to the whole fleet wakes every long-poll, and each look then costs the
server one short read rather than ORM work and several trips through the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefleet import fleet_rules
from edgefleet.contract import DesiredState, JobCancel, WakeReason
from edgefleet.db.session import Sessions
from edgefleet.server.services import caps, dispatch
from edgefleet.server.services.workers import DESIRED_OF, desired_state, refusal


@dataclass(frozen=True)
class Look:
    desired: DesiredState
    #: None: nothing for the worker yet, keep waiting.
    reason: WakeReason | None
    cancel: list[JobCancel] = field(default_factory=list)


def look(db: Sessions, hostname: str, instance_id: str, version: int, free_slots: int) -> Look:
    with db.reader.connect() as connection:
        worker = connection.execute(DESIRED_OF, {"hostnames": [hostname]}).one_or_none()
        refused = refusal(worker, hostname, instance_id)
        if refused is not None:
            raise refused
        desired = desired_state(worker)
        changed = desired.version != version
        # Only a busy worker has runs to cancel; only one with free slots can take work.
        cancelled = free_slots < desired.concurrency and dispatch.has_new_cancels(
            connection, hostname
        )
        accepting = fleet_rules.accepts_work(
            maintenance=desired.maintenance, shutting_down=desired.shutdown, free_slots=free_slots
        )
        full = caps.Full()
        work = (
            not (changed or cancelled)
            and accepting
            and dispatch.queued_job_fits(
                connection, caps.open_queues(connection, desired.queues, full), free_slots
            )
        )
    if full.unmarked:  # this worker will wait on a full cap: a run that ends must wake it
        caps.mark_bound(db, full.unmarked)
    cancel = dispatch.take_new_cancels(db, hostname) if cancelled else []
    if changed:
        return Look(desired, WakeReason.CHANGED, cancel)
    if cancel:
        return Look(desired, WakeReason.CANCEL, cancel)
    return Look(desired, WakeReason.WORK if work else None)
