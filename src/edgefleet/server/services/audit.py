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

from sqlalchemy import Connection, Dialect, column, insert, table
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
    """Write ``rows`` (made by ``entry``) in one statement; no rows, no statement. A Core
    insert with no column types: the ORM's bookkeeping and the per-row conversion of the
    same timestamp (``at`` is encoded once for the database here) are what a fleet-wide
    change can't afford."""
    if not rows:
        return
    dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
    encode_at = _encoder(dialect)
    encoded: dict[datetime, Any] = {}
    plain = []
    for row in rows:
        at = row["at"]
        if at not in encoded:
            encoded[at] = encode_at(at)
        plain.append({**row, "at": encoded[at]})
    session.execute(insert(_UNTYPED), plain)


#: The audit table without column types: values go to the driver as given.
_UNTYPED = table(
    AuditEntry.__tablename__,
    *(column(c.name) for c in AuditEntry.__table__.columns if not c.primary_key),
)


def _encoder(dialect: Dialect) -> Callable[[Any], Any]:
    """How the dialect converts an ``at`` for the database (``UTCDateTime``'s binding)."""
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
