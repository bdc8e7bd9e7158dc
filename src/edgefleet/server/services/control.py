"""Operator changes to workers' desired state: ``change_workers`` is the one entry.

Each request is one transaction over all targeted workers: it is checked for every worker
before anything is written, so a bad request changes nothing. Every changed field is audited,
and each changed worker's desired version goes up once so it can acknowledge the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import JSON, Text, cast, select, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import (
    AddQueuesChange,
    AuditView,
    ChangeSet,
    CommentedChange,
    ControlRequest,
    PlainChange,
    RemoveQueuesChange,
    SetConcurrencyChange,
    Target,
)
from edgefleet.db.models import AuditEntry, Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, InvalidRequest
from edgefleet.server.events import WorkerChanged
from edgefleet.server.services import audit, lifecycle, targets
from edgefleet.server.services.workers import (
    DESIRED_COLUMNS,
    DESIRED_STATES,
    desired_fields,
    get_worker,
    observed_state,
)

#: A mutation applied to one worker's row as read (``Editable``): it sets the override
#: columns as it would a ``Worker``'s, and returns {field: (old, new)} for what it changed.
Mutation = Callable[["Editable"], dict[str, tuple[Any, Any]]]

_worker = Worker.__table__
#: The columns a change may write (besides ``desired_version``).
EDITABLE = (
    "concurrency_override",
    "concurrency_override_until",
    "queues_override",
    "maintenance_requested",
    "maintenance_comment",
    "shutdown_requested",
)
#: What a change reads of each targeted worker: its name and version, then its settings
#: (``fleet_rules.WorkerSettings``) and the rest of its desired state, which its wake-up
#: carries. JSON columns come as text, decoded only for the first worker that has them.
_SETTINGS = [
    _worker.c.hostname,
    *(cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c for c in DESIRED_COLUMNS),
]
#: Read only for the rules that need them: labels to match a selector again as locked, and
#: ``sysinfo`` (as text) for the CPUs a worker reports (``_within_cpus``).
_LABELS = _worker.c.labels
_SYSINFO = cast(_worker.c.sysinfo, Text).label("sysinfo")
_AS_TEXT = frozenset(c.name for c in DESIRED_COLUMNS if isinstance(c.type, JSON))


class Editable(SimpleNamespace):
    """One targeted worker's row as plain values, which a ``Mutation`` changes in place."""


def _load(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def apply_to_targets(
    db: sessionmaker[Session],
    target: Target,
    mutate: Mutation,
    actor: str,
    comment: str | None = None,
    *,
    cpus: bool = False,
) -> ChangeSet:
    """Read the targeted rows (locked as ``targets.resolve`` locks them; with ``cpus``, also
    the CPUs each reports, as ``cpus``), work out every change in Python, and only then
    write: one UPDATE per set of new values (a fleet-wide change gives every worker the
    same) and one multi-row audit insert, however many workers a change names.

    Workers whose settings read the same get the same change (``_Outcome``), worked out
    once: a fleet of a thousand has a few distinct settings. The answer's changes are
    validated once, as a whole (cheaper than building each)."""
    extra = [*([_SYSINFO] if cpus else []), *([_LABELS] if target.selector is not None else [])]
    width = len(_SETTINGS)
    with db.begin() as session:
        rows = targets.resolve_rows(session, target, [*_SETTINGS, *extra])
        names = [column.name for column in _SETTINGS]
        outcomes: dict[tuple[Any, ...], _Outcome] = {}
        updates: dict[tuple[bool, tuple[tuple[str, Any], ...]], _Update] = {}
        log = _Log(utcnow(), actor, comment)
        versions: dict[str, int] = {}
        changes: list[dict[str, Any]] = []
        audit_rows: list[dict[str, Any]] = []
        edited: dict[str, tuple[int, dict[str, Any]]] = {}
        for row in rows:
            values = tuple(row)
            hostname, version = values[0], values[1]
            # The worker's settings, past its name and version.
            key = values[2:width] + ((_cpus(row.sysinfo),) if cpus else ())
            outcome = outcomes.get(key)
            if outcome is None:
                read = dict(zip(names, values[:width], strict=True))
                if cpus:
                    read["cpus"] = key[-1]
                outcome = outcomes[key] = _Outcome(read, mutate, log, updates)
            if outcome.changed:
                # The row is locked (on SQLite, the write lock is held): its version + 1 is
                # the one the UPDATE below writes.
                version += 1
                edited[hostname] = (version, outcome.desired)
                audit_rows += audit.retarget(outcome.audit, hostname)
                changes += _reported(hostname, version, outcome.changed)
            if outcome.update is not None:
                outcome.update.hostnames.append(hostname)
            versions[hostname] = version
        for planned in updates.values():
            planned.run(session)
        audit.record(session, audit_rows)
        answer = ChangeSet.model_validate(
            {"workers": list(versions), "changes": changes, "versions": versions}
        )
        answer._changed = edited
        return answer


def _cpus(sysinfo: str | None) -> Any:
    """The CPU count in a worker's ``sysinfo`` (JSON text), as it reported it."""
    return (_load(sysinfo) or {}).get("cpus")


class _Log(NamedTuple):
    """What every audit row of one change says alike."""

    at: datetime
    actor: str
    comment: str | None


class _Outcome:
    """What a change does to a worker, the first of those whose settings read the same
    (``read``): the fields it changes, the columns it writes (``update``: the UPDATE that
    writes them, joined in ``updates``), the worker's audit rows, and its desired state
    after the change but for its version."""

    def __init__(
        self,
        read: dict[str, Any],
        mutate: Mutation,
        log: _Log,
        updates: dict[tuple[bool, tuple[tuple[str, Any], ...]], _Update],
    ) -> None:
        read.update({name: _load(read[name]) for name in _AS_TEXT})
        worker = Editable(**read)
        self.changed = mutate(worker)
        edits = {c: getattr(worker, c) for c in EDITABLE if getattr(worker, c) != read[c]}
        self.update: _Update | None = None
        if edits or self.changed:
            key = (bool(self.changed), tuple((c, _hashable(v)) for c, v in edits.items()))
            self.update = updates.setdefault(key, _Update(edits, bool(self.changed)))
        self.audit = audit.worker_rows(worker.hostname, self.changed, *log)
        self.desired = desired_fields(worker)


def _reported(
    hostname: str, version: int, changed: dict[str, tuple[Any, Any]]
) -> list[dict[str, Any]]:
    """A worker's changed fields as the answer's ``WorkerChange`` items."""
    return [
        {"hostname": hostname, "field": f, "old": old, "new": new, "desired_version": version}
        for f, (old, new) in changed.items()
    ]


def wake_ups(changes: ChangeSet) -> tuple[WorkerChanged, ...]:
    """The wake-ups of the workers a change touched (those it gave a new version), each with
    its new desired state: built after the answer is sent, off the request's time, and
    validated as one list."""
    changed = sorted(changes._changed.items())
    states = DESIRED_STATES.validate_python(
        [{**desired, "version": version} for _, (version, desired) in changed]
    )
    return tuple(
        WorkerChanged(hostname, state) for (hostname, _), state in zip(changed, states, strict=True)
    )


class _Update:
    """The same new ``values`` for several workers (and with ``bump`` a new desired
    version for each): one UPDATE per ``targets.LOCK_CHUNK`` of them."""

    def __init__(self, values: dict[str, Any], bump: bool) -> None:
        self.values, self.bump = values, bump
        self.hostnames: list[str] = []

    def run(self, session: Session) -> None:
        values: dict[str, Any] = dict(self.values)
        if self.bump:
            values["desired_version"] = _worker.c.desired_version + 1
        for start in range(0, len(self.hostnames), targets.LOCK_CHUNK):
            names = self.hostnames[start : start + targets.LOCK_CHUNK]
            session.execute(update(_worker).where(_worker.c.hostname.in_(names)).values(values))


def _hashable(value: Any) -> Any:
    """A column's new value as part of a key: a list of queues as a tuple."""
    return tuple(value) if isinstance(value, list) else value


def _diff(**fields: tuple[Any, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: pair for name, pair in fields.items() if pair[0] != pair[1]}


def change_workers(
    db: sessionmaker[Session], request: ControlRequest, actor: str, per_cpu: float = 0.0
) -> ChangeSet:
    """Apply one change to every targeted worker: the one way the desired state is changed.

    Every control route, the worker's own maintenance switch included, comes here; the
    change's ``action`` picks how one worker is changed and what the audit rows say.
    A concurrency beyond ``per_cpu`` times a worker's CPUs is refused unless forced.
    """
    change = request.change
    mutate, comment = _MUTATIONS[change.action](change)
    cpus = (
        isinstance(change, SetConcurrencyChange)
        and bool(change.concurrency)
        and not change.force
        and _beyond_one_cpu(change.concurrency, per_cpu)
    )
    if cpus:
        mutate = _within_cpus(mutate, change.concurrency, per_cpu)
    changes = apply_to_targets(db, request.target, mutate, actor, comment, cpus=cpus)
    if change.action == "remove-queues" and not changes.changes:
        raise InvalidRequest(
            f"none of the targeted workers serves {','.join(change.queues)}; nothing changed"
        )
    return changes


#: What one action does: (how it changes one worker, the comment its audit rows carry).
Plan = tuple[Mutation, str | None]


def _set_concurrency(change: SetConcurrencyChange) -> Plan:
    """Set the operator's concurrency, until ``until`` when given (a set without it holds
    until reset); ``reset`` hands it back to each worker's flag."""
    if change.reset == (change.concurrency is not None):
        raise InvalidRequest("give exactly one of 'concurrency' (1 or more) or 'reset': true")
    _check_until(change)

    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = _concurrency_fields(worker)
        worker.concurrency_override = change.concurrency
        worker.concurrency_override_until = change.until
        new = _concurrency_fields(worker)
        return _diff(**{name: (old[name], new[name]) for name in old})

    return mutate, None


def _beyond_one_cpu(value: int, per_cpu: float) -> bool:
    """Whether ``value`` is refused to a worker with one CPU: a value that is not is
    refused to none (a worker that reports fewer is not checked), and no CPUs are read."""
    return fleet_rules.cpu_refusal("", {"cpus": 1}, value, per_cpu) is not None


def _within_cpus(mutate: Mutation, value: int, per_cpu: float) -> Mutation:
    """``mutate``, refusing first (the whole request) a worker whose CPUs (``cpus``) are too
    few."""

    def checked(worker: Editable) -> dict[str, tuple[Any, Any]]:
        cpus = {"cpus": worker.cpus}
        refused = fleet_rules.cpu_refusal(worker.hostname, cpus, value, per_cpu)
        if refused is not None:
            raise Conflict(refused)
        return mutate(worker)

    return checked


def _check_until(change: SetConcurrencyChange) -> None:
    if change.until is None:
        return
    if change.reset:
        raise InvalidRequest("'until' goes with 'concurrency', not with 'reset'")
    if change.until <= utcnow():
        raise InvalidRequest(f"'until' {change.until.isoformat()} is in the past")


def _concurrency_fields(worker: fleet_rules.WorkerSettings) -> dict[str, Any]:
    """The concurrency in force, who set it and when it ends, as the audit log shows them."""
    until = fleet_rules.concurrency_until(worker)
    return {
        "concurrency": fleet_rules.concurrency(worker),
        "concurrency_source": fleet_rules.concurrency_source(worker),
        "concurrency_until": None if until is None else until.isoformat(),
    }


def _add_queues(change: AddQueuesChange) -> Plan:
    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = fleet_rules.queues(worker)
        new = old + [q for q in change.queues if q not in old]
        if new != old:
            worker.queues_override = new
        return _diff(queues=(old, new))

    return mutate, None


def _remove_queues(change: RemoveQueuesChange) -> Plan:
    """A worker keeps at least one queue; removing queues no target serves is refused."""

    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = fleet_rules.queues(worker)
        new = [q for q in old if q not in change.queues]
        if not new:
            raise InvalidRequest(
                f"removing {','.join(change.queues)} would leave worker {worker.hostname!r} "
                "with no queue; add another queue first"
            )
        if new != old:
            worker.queues_override = new
        return _diff(queues=(old, new))

    return mutate, None


def _reset_queues(change: PlainChange) -> Plan:
    """Hand each worker's queues back to its own ``--queues`` flag."""

    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = fleet_rules.queues(worker)
        worker.queues_override = None
        return _diff(queues=(old, fleet_rules.queues(worker)))

    return mutate, "handed back to the worker's flag"


def _request_maintenance(change: CommentedChange) -> Plan:
    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = (worker.maintenance_requested, worker.maintenance_comment)
        worker.maintenance_requested = True
        worker.maintenance_comment = change.comments
        return _diff(maintenance=(old[0], True), maintenance_comment=(old[1], change.comments))

    return mutate, change.comments


def _exit_maintenance(change: PlainChange) -> Plan:
    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = (worker.maintenance_requested, worker.maintenance_comment)
        worker.maintenance_requested = False
        worker.maintenance_comment = None
        return _diff(maintenance=(old[0], False), maintenance_comment=(old[1], None))

    return mutate, None


def _update_maintenance_comment(change: CommentedChange) -> Plan:
    """Only for workers already in maintenance: one that is not refuses the whole request."""

    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        if not worker.maintenance_requested:
            raise Conflict(f"worker {worker.hostname!r} is not in maintenance")
        old = worker.maintenance_comment
        worker.maintenance_comment = change.comments
        return _diff(maintenance_comment=(old, change.comments))

    return mutate, change.comments


def _shutdown(change: PlainChange) -> Plan:
    def mutate(worker: Editable) -> dict[str, tuple[Any, Any]]:
        old = worker.shutdown_requested
        worker.shutdown_requested = True
        return _diff(shutdown=(old, True))

    return mutate, None


_MUTATIONS: dict[str, Callable[[Any], Plan]] = {
    "set-concurrency": _set_concurrency,
    "add-queues": _add_queues,
    "remove-queues": _remove_queues,
    "reset-queues": _reset_queues,
    "request-maintenance": _request_maintenance,
    "exit-maintenance": _exit_maintenance,
    "update-maintenance-comment": _update_maintenance_comment,
    "shutdown": _shutdown,
}


REMOVABLE_STATES = frozenset({"offline", "stopped", "revoked"})


def remove_worker(
    db: sessionmaker[Session], hostname: str, actor: str, offline_timeout: float
) -> None:
    """Forget a worker that is gone; a live one must be shut down first."""
    with db.begin() as session:
        worker = get_worker(session, hostname, lock=True)
        state = observed_state(worker, utcnow(), offline_timeout)
        if state not in REMOVABLE_STATES:
            raise Conflict(
                f"worker {hostname!r} is {state}; only an offline, stopped or revoked worker "
                "can be removed (shut it down first)"
            )
        now = utcnow()
        why = "its worker was removed while the job was running"
        lifecycle.lose_running_jobs(session, hostname, why, now)
        audit.record(session, [audit.entry(now, actor, hostname, "worker", state, "removed")])
        session.delete(worker)


def list_audit(
    db: sessionmaker[Session],
    hostname: str | None,
    since,
    limit: int,
    before: int | None = None,
) -> list[AuditView]:
    """Newest first; ``before`` (the last id of a page) pages on to older entries."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if hostname is not None:
        query = query.where(AuditEntry.target == hostname)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    with db() as session:
        return [
            AuditView(
                id=e.id,
                at=e.at,
                actor=e.actor,
                target=e.target,
                field=e.field,
                old=_load(e.old_value),
                new=_load(e.new_value),
                comment=e.comment,
            )
            for e in session.scalars(query)
        ]
