"""The audit log's one writer: how a row keeps its values, and one insert per transaction
however many workers a change names (here, revoking a whole fleet)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from edgefleet.contract import Registration, Target
from edgefleet.db.models import AuditEntry
from edgefleet.server.services import audit, credentials, workers
from support import statements_run

AT = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_row_keeps_values_as_json_none_as_null_and_cuts_a_long_target() -> None:
    row = audit.entry(AT, "ops", "x" * 300, "queues", None, ["a", "b"], "why")
    assert row == {
        "at": AT,
        "actor": "ops",
        "target": "x" * 255,
        "field": "queues",
        "old_value": None,
        "new_value": '["a", "b"]',
        "comment": "why",
    }
    rows, changes = audit.worker_changes("w1", 4, {"concurrency": (2, 3)}, AT, "ops", None)
    assert [(r["target"], r["old_value"], r["new_value"]) for r in rows] == [("w1", "2", "3")]
    assert [(c.hostname, c.field, c.old, c.new, c.desired_version) for c in changes] == [
        ("w1", "concurrency", 2, 3, 4)
    ]


def test_revoking_many_workers_writes_their_audit_rows_in_one_insert(session_factory) -> None:
    hostnames = [f"w{i}" for i in range(5)]
    for hostname in hostnames:
        reg = Registration(
            instance_id=uuid.uuid4().hex, concurrency=1, queues=["default"], heartbeat_interval=1
        )
        workers.register(session_factory, hostname, reg, 5.0)
    with statements_run(session_factory.writer) as run:
        credentials.revoke_workers(session_factory, Target(all=True), "ops")
    inserts = [s for s in run if s.lstrip().upper().startswith("INSERT INTO EDGE_AUDIT")]
    assert len(inserts) == 1
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.field == "revoked")).all()
    assert sorted((e.target, e.old_value, e.new_value) for e in entries) == [
        (hostname, None, "true") for hostname in hostnames
    ]
