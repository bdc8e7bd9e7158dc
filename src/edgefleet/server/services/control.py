"""Operator changes to workers' desired state: each one versioned, audited and pushed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.contract import WorkerChange
from edgefleet.db.models import AuditEntry, Worker
from edgefleet.db.types import utcnow
from edgefleet.server.services.workers import get_worker


def _audit_value(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def record_change(
    session: Session,
    worker: Worker,
    field: str,
    old: Any,
    new: Any,
    actor: str,
    comment: str | None = None,
) -> WorkerChange:
    """Bump the worker's desired version and write the audit row, in the caller's transaction."""
    worker.desired_version += 1
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            target=worker.hostname,
            field=field,
            old_value=_audit_value(old),
            new_value=_audit_value(new),
            comment=comment,
        )
    )
    return WorkerChange(
        hostname=worker.hostname,
        field=field,
        old=old,
        new=new,
        desired_version=worker.desired_version,
    )


def set_concurrency(
    db: sessionmaker[Session], hostname: str, concurrency: int | None, actor: str
) -> WorkerChange:
    """Set the operator's concurrency for one worker; ``None`` hands it back to the flag."""
    with db.begin() as session:
        worker = get_worker(session, hostname, lock=True)
        old = worker.concurrency
        worker.concurrency_override = concurrency
        return record_change(
            session,
            worker,
            "concurrency",
            old,
            worker.concurrency,
            actor,
            comment="handed back to the worker's --concurrency flag"
            if concurrency is None
            else None,
        )
