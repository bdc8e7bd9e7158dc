"""Schedules: windows of time in which a label group (or the whole fleet) runs at a given
concurrency, a layer between a worker's operator override and the label rules.

A schedule's window is put in force in one transaction: the window is written on the
schedule row (``window_start``/``window_end``) and every worker's standing layer is
resolved again (``layers.refresh``), which bumps, wakes and audits only the workers whose
concurrency in force moved. Adding or removing a schedule does that at once (actor: the
operator); the sweep (``sweep_windows``) does it when a window opens, starts again or
closes (actor: ``server``). Windows only move forward: a replica whose clock lags sees
nothing to do, and a second replica sweeping the same boundary finds it done, so each
opening and closing is audited once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import cron_windows, fleet_rules
from edgefleet.contract import ChangeSet, ScheduleChange, ScheduleCreate, ScheduleView
from edgefleet.db.models import Schedule
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, InvalidRequest, NotFound
from edgefleet.server.events import Outcome, changed_workers
from edgefleet.server.services import audit, layers
from edgefleet.server.services.concurrency_rules import all_workers, check_cpus

#: Who the audit log names for the windows the server opens and closes by itself.
SERVER_ACTOR = "server"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


def target(name: str) -> str:
    """The audit log's target for a schedule."""
    return f"schedule:{name}"


def stamp(at: datetime) -> str:
    """A moment as the server's messages and notes write it: UTC, to the second."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# --- reading ---------------------------------------------------------------------------


def view(schedule: Schedule, now: datetime) -> ScheduleView:
    """The schedule with its window as the clock says at ``now``."""
    cron, tz, seconds = schedule.cron, schedule.timezone, schedule.duration_seconds
    window = cron_windows.open_window(cron, tz, seconds, now)
    upcoming = cron_windows.next_start(cron, tz, now)
    return ScheduleView(
        name=schedule.name,
        selector=dict(schedule.selector),
        all=not schedule.selector,
        cron=cron,
        timezone=tz,
        duration_seconds=seconds,
        concurrency=schedule.concurrency,
        created_at=schedule.created_at,
        created_by=schedule.created_by,
        active=window is not None,
        window_start=None if window is None else window.start,
        window_end=None if window is None else window.end,
        next_start=upcoming,
        next_start_local=None if upcoming is None else upcoming.astimezone(cron_windows.zone(tz)),
    )


def list_schedules(db: sessionmaker[Session], now: datetime | None = None) -> list[ScheduleView]:
    """Every schedule, by name."""
    now = now or utcnow()
    with db() as session:
        return [view(s, now) for s in session.scalars(select(Schedule).order_by(Schedule.name))]


def next_boundary(db: sessionmaker[Session], now: datetime) -> datetime | None:
    """The soonest time after ``now`` at which a window opens, starts again or closes."""
    with db() as session:
        rows = session.execute(
            select(Schedule.cron, Schedule.timezone, Schedule.duration_seconds)
        ).all()
    times = (cron_windows.next_boundary(cron, tz, seconds, now) for cron, tz, seconds in rows)
    return min((t for t in times if t is not None), default=None)


# --- adding and removing ---------------------------------------------------------------


def check(request: ScheduleCreate) -> dict[str, str]:
    """The selector a request names, once its cron expression and time zone are known good."""
    if request.all == (request.selector is not None):
        raise InvalidRequest("give exactly one of 'selector' (KEY=VALUE labels) or 'all'")
    if request.selector is not None and not request.selector:
        raise InvalidRequest("empty selector: give at least one KEY=VALUE label (or 'all')")
    try:
        cron_windows.check_cron(request.cron)
        cron_windows.zone(request.timezone)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return dict(sorted((request.selector or {}).items()))


def _free_name(session: Session, selector: dict[str, str]) -> str:
    """A name from the selector's values (``plant1``), else its keys when no value has a
    usable character (``zone`` for ``zone=ü``); ``all`` for every worker; numbered if taken."""
    words = (
        _NAME_CHARS.sub("-", "-".join(part)).strip("-._")[:48]
        for part in (selector.values(), selector.keys())
    )
    base = next((word for word in words if word), "all")
    taken = set(session.scalars(select(Schedule.name).where(Schedule.name.startswith(base))))
    number = 1
    name = base
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def _definition(schedule: Schedule) -> dict[str, Any]:
    return {
        "selector": dict(schedule.selector),
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "duration_seconds": schedule.duration_seconds,
        "concurrency": schedule.concurrency,
    }


def add(
    db: sessionmaker[Session],
    request: ScheduleCreate,
    actor: str,
    per_cpu: float = 0.0,
    now: datetime | None = None,
) -> Outcome[ScheduleChange]:
    """Add a schedule; if its window is open now, the workers it matches adopt it at once."""
    selector = check(request)
    now = now or utcnow()
    with db.begin() as session:
        layers.take_rules_lock(session, shared=False)
        workers = all_workers(session)
        if not request.force:
            check_cpus(workers, selector, request.concurrency, per_cpu)
        name = request.name or _free_name(session, selector)
        if session.scalars(select(Schedule.id).where(Schedule.name == name)).first() is not None:
            raise Conflict(f"there is a schedule named {name!r} already; remove it first")
        window = cron_windows.open_window(
            request.cron, request.timezone, request.duration_seconds, now
        )
        schedule = Schedule(
            name=name,
            selector=selector,
            cron=request.cron,
            timezone=request.timezone,
            duration_seconds=request.duration_seconds,
            concurrency=request.concurrency,
            created_at=now,
            created_by=actor,
            window_start=None if window is None else window.start,
            window_end=None if window is None else window.end,
        )
        session.add(schedule)
        session.flush()
        comment = f"schedule {name} added" + (
            f", window open until {stamp(window.end)}" if window else ""
        )
        _audit(session, now, actor, name, None, _definition(schedule), comment)
        changes = layers.refresh(session, workers, layers.load(session, now), actor, comment)
        return _outcome(view(schedule, now), changes, removed=False)


def remove(
    db: sessionmaker[Session], name: str, actor: str, now: datetime | None = None
) -> Outcome[ScheduleChange]:
    """Remove a schedule: the workers its open window decided for fall to the next layer."""
    now = now or utcnow()
    with db.begin() as session:
        layers.take_rules_lock(session, shared=False)
        workers = all_workers(session)
        schedule = session.scalars(select(Schedule).where(Schedule.name == name)).one_or_none()
        if schedule is None:
            raise NotFound(f"there is no schedule named {name!r}; `edgefleet schedule list`")
        shown = view(schedule, now)
        session.delete(schedule)
        session.flush()
        comment = f"schedule {name} removed"
        _audit(session, now, actor, name, _definition(schedule), None, comment)
        changes = layers.refresh(session, workers, layers.load(session, now), actor, comment)
        return _outcome(shown, changes, removed=True)


def _outcome(shown: ScheduleView, changes: list, *, removed: bool) -> Outcome[ScheduleChange]:
    touched = sorted({change.hostname for change in changes})
    versions = {c.hostname: c.desired_version for c in changes}
    change_set = ChangeSet(workers=touched, changes=changes, versions=versions)
    answer = ScheduleChange(schedule=shown, removed=removed, changes=change_set)
    return Outcome(answer, changed_workers(change_set))


def _audit(
    session: Session,
    at: datetime,
    actor: str,
    name: str,
    old: Any,
    new: Any,
    comment: str,
    field: str = "schedule",
) -> None:
    audit.record(session, [audit.entry(at, actor, target(name), field, old, new, comment)])


# --- opening and closing windows -------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """A schedule's window moving at a sweep: ``window`` opened or started again, or (None)
    the open one closed."""

    schedule: Schedule
    window: cron_windows.Window | None


def moved(schedule: Schedule, now: datetime) -> Move | None:
    """How the schedule's window moves at ``now``, if it does. Only forward: a window is
    closed once its end has passed, and replaced only by a later start."""
    cron, tz, seconds = schedule.cron, schedule.timezone, schedule.duration_seconds
    window = cron_windows.open_window(cron, tz, seconds, now)
    start, end = schedule.window_start, schedule.window_end
    if window is not None:
        return Move(schedule, window) if start is None or window.start > start else None
    if start is not None and (end is None or now >= end):
        return Move(schedule, None)
    return None


def sweep_windows(db: sessionmaker[Session], now: datetime) -> list[str]:
    """Open, start again and close the windows due at ``now``, and resolve every worker's
    layer again if one moved. Returns the workers changed, whose long-polls should hear
    of it. Reads the schedules without a lock first: most sweeps find nothing to do."""
    with db() as session:
        if not any(moved(s, now) for s in session.scalars(select(Schedule))):
            return []
    with db.begin() as session:
        layers.take_rules_lock(session, shared=False)
        workers = all_workers(session)
        schedules = session.scalars(select(Schedule).order_by(Schedule.name).with_for_update())
        moves = [move for move in (moved(s, now) for s in schedules) if move is not None]
        if not moves:
            return []
        for move in moves:
            _move(session, move, now)
        session.flush()
        snapshot = layers.load(session, now)
        changes = layers.refresh(session, workers, snapshot, SERVER_ACTOR, window_comment)
        return sorted({change.hostname for change in changes})


def _move(session: Session, move: Move, now: datetime) -> None:
    schedule, window = move.schedule, move.window
    was_open = schedule.window_start is not None and (
        schedule.window_end is None or now < schedule.window_end
    )
    schedule.window_start = None if window is None else window.start
    schedule.window_end = None if window is None else window.end
    if window is None:
        _audit(
            session,
            now,
            SERVER_ACTOR,
            schedule.name,
            "open",
            "closed",
            f"schedule {schedule.name}: window closed",
            field="window",
        )
    elif not was_open:
        _audit(
            session,
            now,
            SERVER_ACTOR,
            schedule.name,
            "closed",
            "open",
            f"schedule {schedule.name}: window opened, concurrency {schedule.concurrency} "
            f"until {stamp(window.end)}",
            field="window",
        )


def window_comment(before: layers.Layer | None, after: layers.Layer | None) -> str:
    """A worker's audit comment when windows moved: the schedule that took over or let go."""
    now_in_force = after.describe() if after else "no standing rule"
    if after is not None and after.source == fleet_rules.SCHEDULE:
        return f"schedule {after.rule}: window open, concurrency {after.concurrency}"
    if before is not None and before.source == fleet_rules.SCHEDULE:
        return f"schedule {before.rule}: window closed; now in force: {now_in_force}"
    return f"now in force: {now_in_force}"
