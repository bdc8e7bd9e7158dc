"""Looks of workers' long-polls: should each answer now, and with what?

Everything a long-poll compares is read in one read-only transaction, with statements built
once. A change to the whole fleet wakes every long-poll at once, so the looks that arrive
together are made together (``look_many``, grouped by the server like heartbeats): one
transaction and one trip through the database threads for a group, not one per worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Connection

from edgefleet import fleet_rules
from edgefleet.contract import DesiredState, JobCancel, WakeReason
from edgefleet.db.session import Sessions
from edgefleet.errors import EdgefleetError
from edgefleet.server.services import dispatch
from edgefleet.server.services.workers import (
    DESIRED_OF,
    Ack,
    desired_state,
    record_acks,
    refusal,
)


class Ask(NamedTuple):
    """One long-poll's question: process ``instance_id`` of ``hostname`` holds ``version``
    and has ``free_slots``; ``ack``, what it acknowledges applying (its first look only)."""

    hostname: str
    instance_id: str
    version: int
    free_slots: int
    ack: Ack | None = None


@dataclass(frozen=True)
class Look:
    desired: DesiredState
    #: None: nothing for the worker yet, keep waiting.
    reason: WakeReason | None
    cancel: list[JobCancel] = field(default_factory=list)
    #: The version the worker's acknowledgement recorded last.
    applied_version: int = 0


def look(db: Sessions, hostname: str, instance_id: str, version: int, free_slots: int) -> Look:
    (seen,) = look_many(db, [Ask(hostname, instance_id, version, free_slots)])
    if isinstance(seen, EdgefleetError):
        raise seen
    return seen


def look_many(db: Sessions, asks: list[Ask]) -> list[Look | EdgefleetError]:
    """A look for each ask, in order, or why the worker is refused (see ``refusal``).

    The acknowledgements the asks carry that are news (beyond the version the worker's row
    has acknowledged) are written in the same trip, in one transaction: after a fleet-wide
    change a thousand long-polls come back at once, each with its acknowledgement."""
    with db.reader.connect() as connection:
        hostnames = list({ask.hostname for ask in asks})
        rows = {r.hostname: r for r in connection.execute(DESIRED_OF, {"hostnames": hostnames})}
        # Only a busy worker has runs to cancel: one query for the group finds which do.
        busy = [ask.hostname for ask in asks if _busy(rows.get(ask.hostname), ask)]
        cancelling = dispatch.with_new_cancels(connection, sorted(set(busy)))
        fits: dict[tuple[tuple[str, ...], int], bool] = {}
        seen = [
            _look_one(connection, rows.get(ask.hostname), ask, fits, cancelling) for ask in asks
        ]
    news = [
        ask.ack
        for ask, one in zip(asks, seen, strict=True)
        if ask.ack is not None and isinstance(one, Look) and ask.ack.version > one.applied_version
    ]
    if news:
        with db.writer.begin() as writing:
            record_acks(writing, news)
    return [
        _with_cancels(db, ask, one, ask.hostname in cancelling)
        for ask, one in zip(asks, seen, strict=True)
    ]


def _busy(worker, ask: Ask) -> bool:
    """Whether the worker may be running something: fewer slots free than its concurrency."""
    return worker is not None and ask.free_slots < fleet_rules.concurrency(worker)


def _look_one(
    connection: Connection,
    worker,
    ask: Ask,
    fits: dict[tuple[tuple[str, ...], int], bool],
    cancelling: set[str],
) -> Look | EdgefleetError:
    """``fits`` remembers, within one transaction, whether work fits a queue list and slots:
    a woken fleet mostly shares both (full queue caps included). ``cancelling`` names the
    workers with cancels not sent yet."""
    refused = refusal(worker, ask.hostname, ask.instance_id)
    if refused is not None:
        return refused
    desired = desired_state(worker)
    applied = worker.applied_version
    if desired.version != ask.version:
        return Look(desired, WakeReason.CHANGED, applied_version=applied)
    # Only a busy worker has runs to cancel; only one with free slots can take work.
    if ask.hostname in cancelling:
        return Look(desired, WakeReason.CANCEL, applied_version=applied)
    accepting = fleet_rules.accepts_work(
        maintenance=desired.maintenance, shutting_down=desired.shutdown, free_slots=ask.free_slots
    )
    if not accepting:
        return Look(desired, None, applied_version=applied)
    key = (tuple(desired.queues), ask.free_slots)
    if key not in fits:
        fits[key] = dispatch.queued_job_fits(connection, desired.queues, ask.free_slots)
    return Look(desired, WakeReason.WORK if fits[key] else None, applied_version=applied)


def _with_cancels(
    db: Sessions, ask: Ask, seen: Look | EdgefleetError, cancelling: bool
) -> Look | EdgefleetError:
    """The cancels a look found, taken (marked as sent); a change answers with them too.
    Only a worker the look found ``cancelling`` costs a write: one cancelled meanwhile wakes
    its long-poll again."""
    if isinstance(seen, EdgefleetError) or seen.reason is None or seen.reason == WakeReason.WORK:
        return seen
    if not cancelling:
        return seen
    cancel = dispatch.take_new_cancels(db, ask.hostname)
    if seen.reason == WakeReason.CANCEL and not cancel:
        return Look(seen.desired, None, applied_version=seen.applied_version)
    return Look(seen.desired, seen.reason, cancel, seen.applied_version)
