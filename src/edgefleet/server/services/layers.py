"""The standing concurrency layers, resolved ahead of time onto each worker row.

A claim reads a worker's concurrency off its own row (``workers.DESIRED_COLUMNS``), so the
layers below an operator override are resolved when they change, not when jobs are claimed:
``layer_concurrency``, ``layer_source`` and ``layer_rule`` hold the result. They are written
for every worker when a rule is set or removed (``concurrency_rules``), and for one worker
when it registers or enrolls (its labels may have changed).

``CANDIDATES`` are the layer sources in order, highest first; the first with a value for a
worker is its layer. Schedules rank above the label rules: their windows are read as the
server last opened them (``schedules.sweep_windows`` opens and closes them in time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from edgefleet import fleet_rules
from edgefleet.contract import WorkerChange
from edgefleet.db.models import ConcurrencyRule, Schedule, Worker
from edgefleet.db.types import utcnow
from edgefleet.server.services import audit

#: Key of the PostgreSQL advisory lock that orders rule changes against registrations
#: ("edgerule"): a rule change takes it alone, registrations share it. On SQLite, writers
#: already take turns.
RULES_LOCK_KEY = 0x6564676572756C65


def take_rules_lock(session: Session, *, shared: bool) -> None:
    """Order this transaction's read of the rules against rule changes: without it, a worker
    registering while a rule is set could read the rules before the change and be missed by
    the change's own pass over the workers."""
    if session.get_bind().dialect.name != "postgresql":
        return
    kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(text(f"SELECT {kind}({RULES_LOCK_KEY})"))


@dataclass(frozen=True)
class Layer:
    """A standing value for one worker: its concurrency, the layer's ``source`` word and
    the rule's name (``site=plant1``; None for the fleet default)."""

    concurrency: int
    source: str
    rule: str | None = None

    def describe(self) -> str:
        name = self.source.replace("-", " ") + (f" {self.rule}" if self.rule else "")
        return f"{name} ({self.concurrency})"


@dataclass(frozen=True)
class OpenWindow:
    """A schedule whose window is open: ``selector`` (empty: every worker) gets
    ``concurrency`` from ``start`` until ``end``."""

    name: str
    selector: dict[str, str]
    concurrency: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Snapshot:
    """The rules as read in one transaction, newest first (ties between label rules of as
    many keys go to the newest), the open schedule windows in the order they rank, and the
    time they were read at."""

    rules: Sequence[fleet_rules.Rule]
    now: datetime
    windows: Sequence[OpenWindow] = ()


def load(session: Session, now: datetime | None = None) -> Snapshot:
    rows = session.scalars(
        select(ConcurrencyRule).order_by(ConcurrencyRule.set_at.desc(), ConcurrencyRule.id.desc())
    )
    rules = [fleet_rules.Rule(dict(r.selector), r.concurrency, r.selector_text) for r in rows]
    return Snapshot(rules, now or utcnow(), _open_windows(session))


def _open_windows(session: Session) -> list[OpenWindow]:
    """Open windows, the one that wins first: the latest start, then the newest schedule
    (``matching_windows`` puts the most specific selector ahead of both)."""
    query = (
        select(Schedule)
        .where(Schedule.window_start.is_not(None), Schedule.window_end.is_not(None))
        .order_by(Schedule.window_start.desc(), Schedule.id.desc())
    )
    return [
        OpenWindow(s.name, dict(s.selector), s.concurrency, s.window_start, s.window_end)
        for s in session.scalars(query)
        if s.window_start is not None and s.window_end is not None
    ]


def matching_windows(worker: Worker, snapshot: Snapshot) -> list[OpenWindow]:
    """The open windows whose selector the worker's labels match, the one in force first:
    most selector keys, then the latest start, then the newest schedule."""
    found = [
        w for w in snapshot.windows if fleet_rules.matches("", worker.labels, None, w.selector)
    ]
    return sorted(found, key=lambda window: -len(window.selector))  # stable


def schedule(worker: Worker, snapshot: Snapshot) -> Layer | None:
    found = matching_windows(worker, snapshot)
    return Layer(found[0].concurrency, fleet_rules.SCHEDULE, found[0].name) if found else None


def label_rule(worker: Worker, snapshot: Snapshot) -> Layer | None:
    found = fleet_rules.matching_rules(worker.labels, snapshot.rules)
    return Layer(found[0].concurrency, fleet_rules.LABEL_RULE, found[0].text) if found else None


def fleet_default(worker: Worker, snapshot: Snapshot) -> Layer | None:
    rule = next((r for r in snapshot.rules if not r.selector), None)
    return None if rule is None else Layer(rule.concurrency, fleet_rules.FLEET_DEFAULT)


#: Layer sources below the operator's override, highest first.
CANDIDATES: tuple[tuple[str, Callable[[Worker, Snapshot], Layer | None]], ...] = (
    (fleet_rules.SCHEDULE, schedule),
    (fleet_rules.LABEL_RULE, label_rule),
    (fleet_rules.FLEET_DEFAULT, fleet_default),
)


def resolve(worker: Worker, snapshot: Snapshot) -> Layer | None:
    """The standing layer in force for ``worker``: the first candidate with a value."""
    for _name, candidate in CANDIDATES:
        layer = candidate(worker, snapshot)
        if layer is not None:
            return layer
    return None


def place(worker: Worker, layer: Layer | None) -> None:
    worker.layer_concurrency = None if layer is None else layer.concurrency
    worker.layer_source = None if layer is None else layer.source
    worker.layer_rule = None if layer is None else layer.rule


def placed(worker: Worker) -> Layer | None:
    """The standing layer written on the worker row."""
    if worker.layer_concurrency is None:
        return None
    source = worker.layer_source or fleet_rules.LABEL_RULE
    return Layer(worker.layer_concurrency, source, worker.layer_rule)


#: How a worker's audit rows explain a change of its layer: one text for all, or one made
#: from the layer before and the layer after.
Comment = str | Callable[[Layer | None, Layer | None], str] | None


def refresh(
    session: Session,
    workers: Sequence[Worker],
    snapshot: Snapshot,
    actor: str,
    comment: Comment = None,
    *,
    bump: bool = True,
) -> list[WorkerChange]:
    """Write each worker's standing layer. A worker whose concurrency in force (or its
    source) changed gets audit rows, all in one insert, commented with ``comment`` (else
    the layer now in force: a registration with other labels), and with ``bump`` a new
    desired version to acknowledge."""
    changes: list[WorkerChange] = []
    rows: list[dict[str, Any]] = []
    for worker in workers:
        old = fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)
        before = placed(worker)
        layer = resolve(worker, snapshot)
        place(worker, layer)
        new = fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)
        if old == new:
            continue
        if bump:
            worker.desired_version += 1
        if callable(comment):
            why = comment(before, layer)
        else:
            why = comment or "now in force: " + (layer.describe() if layer else "no standing rule")
        fields = zip(("concurrency", "concurrency_source"), old, new, strict=True)
        changed = {field: (was, now) for field, was, now in fields if was != now}
        written, answered = audit.worker_changes(
            worker.hostname, worker.desired_version, changed, snapshot.now, actor, why
        )
        rows += written
        changes += answered
    audit.record(session, rows)
    return changes
