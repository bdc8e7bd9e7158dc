"""Writing the audit log: every service that changes something records it here.

A row says who (``actor``) changed which ``field`` of which ``target`` (a worker's hostname,
``queue:<name>``, ``schedule:<name>``, ``token:<name>``), from what to what, and why. Old and
new values are stored as JSON; no value at all is SQL NULL. All the rows of one transaction go
in one multi-row insert: a fleet-wide change writes thousands. Reading the log is
``control.list_audit``; purging it, ``sweep.purge_audit``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.orm import Session

from edgefleet.contract import WorkerChange
from edgefleet.db.models import AuditEntry

#: The longest target the column holds; a longer one is cut, never refused.
MAX_TARGET = 255


def encode(value: Any) -> str | None:
    """A value as the audit log keeps it: JSON, or NULL for none."""
    if value is None:
        return None
    if isinstance(value, str | int | float):
        return _encode_scalar(value)
    return json.dumps(value)


@functools.lru_cache(maxsize=256, typed=True)
def _encode_scalar(value: str | int | float) -> str:
    """A fleet-wide change writes the same few old and new values thousands of times."""
    return json.dumps(value)


def entry(
    at: datetime,
    actor: str,
    target: str,
    field: str,
    old: Any,
    new: Any,
    comment: str | None = None,
) -> dict[str, Any]:
    """One audit row, ready for ``record``."""
    return {
        "at": at,
        "actor": actor,
        "target": target[:MAX_TARGET],
        "field": field,
        "old_value": encode(old),
        "new_value": encode(new),
        "comment": comment,
    }


def record(session: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` (made by ``entry``) in one statement; no rows, no statement.

    Straight to the driver, as one executemany of plain tuples: the ORM's bookkeeping, and
    even Core's handling of each row's parameters (converting the same timestamp a thousand
    times over: ``at`` is converted once per value here) are what a fleet-wide change
    can't afford."""
    if not rows:
        return
    connection = session.connection() if isinstance(session, Session) else session
    dialect = connection.dialect
    convert = _converter(dialect)
    converted: dict[datetime, Any] = {}
    values = []
    for row in rows:
        at = row["at"]
        if at not in converted:
            converted[at] = convert(at)
        values.append((converted[at], *(row[name] for name in _COLUMNS[1:])))
    connection.exec_driver_sql(_insert(dialect), values)


_COLUMNS = ("at", "actor", "target", "field", "old_value", "new_value", "comment")
#: A parameter's marker in SQL by the driver's ``paramstyle`` (SQLite's, psycopg's).
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _insert(dialect: Dialect) -> str:
    markers = ", ".join([_MARKERS[dialect.paramstyle]] * len(_COLUMNS))
    return f"INSERT INTO {AuditEntry.__tablename__} ({', '.join(_COLUMNS)}) VALUES ({markers})"


def _converter(dialect: Dialect) -> Callable[[Any], Any]:
    """How the dialect converts an ``at`` for the driver (``UTCDateTime``'s binding)."""
    process = AuditEntry.__table__.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    return process or (lambda value: value)


def worker_rows(
    hostname: str,
    changed: Mapping[str, tuple[Any, Any]],
    at: datetime,
    actor: str,
    comment: str | None,
) -> list[dict[str, Any]]:
    """An audit row for each of a worker's ``changed`` fields ({field: (old, new)})."""
    return [entry(at, actor, hostname, f, old, new, comment) for f, (old, new) in changed.items()]


def retarget(rows: Sequence[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """``rows`` (made by ``entry``) again for another ``target``: a fleet-wide change
    writes the same rows for many workers."""
    target = target[:MAX_TARGET]
    return [{**row, "target": target} for row in rows]


def worker_changes(
    hostname: str,
    desired_version: int,
    changed: Mapping[str, tuple[Any, Any]],
    at: datetime,
    actor: str,
    comment: str | None,
) -> tuple[list[dict[str, Any]], list[WorkerChange]]:
    """What changing a worker's ``changed`` fields ({field: (old, new)}) writes and answers:
    an audit row for each, and the change each reports at the worker's new version."""
    rows = worker_rows(hostname, changed, at, actor, comment)
    # Values the server itself computed: built without validating each one again.
    changes = [
        WorkerChange.model_construct(
            hostname=hostname, field=f, old=old, new=new, desired_version=desired_version
        )
        for f, (old, new) in changed.items()
    ]
    return rows, changes
