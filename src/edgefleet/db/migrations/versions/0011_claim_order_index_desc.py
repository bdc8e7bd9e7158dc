"""claim order index: ix_edge_job_claim_order, with priority DESC on SQLite too

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

0003 built ``ix_edge_job_queue_order`` as (state, queue, priority DESC, id), but on SQLite
0004 copied ``edge_job`` to add a column, and the copy rebuilt the index with ``priority``
ascending. Every claim then read and sorted all queued jobs of its queue (all of their
columns) to hand out a few: the deeper the queue, the dearer each claim. With the order back
in the index a claim reads its rows and stops. PostgreSQL kept the right order, so there the
index is only renamed; the new name tells a repaired schema from one that is not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_indexes={"edge_job": ["ix_edge_job_claim_order"]},
    drop_indexes={"edge_job": ["ix_edge_job_queue_order"]},
)

_COLUMNS = ["state", "queue", sa.text("priority DESC"), "id"]


def _rename(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # no ALTER INDEX there: built anew
        op.drop_index(old, table_name="edge_job")
        op.create_index(new, "edge_job", _COLUMNS, unique=False)
    else:
        op.execute(f"ALTER INDEX {old} RENAME TO {new}")


def upgrade() -> None:
    _rename("ix_edge_job_queue_order", "ix_edge_job_claim_order")


def downgrade() -> None:
    _rename("ix_edge_job_claim_order", "ix_edge_job_queue_order")
