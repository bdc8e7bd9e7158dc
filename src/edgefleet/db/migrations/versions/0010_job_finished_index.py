"""finished jobs index: (finished_at, queue, state) for the per-minute throughput

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The throughput report counts the jobs finished in a window of minutes per queue and state;
with these three columns in one index it reads only that window's entries, never the table.
"""

from __future__ import annotations

from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(add_indexes={"edge_job": ["ix_edge_job_finished"]})


def upgrade() -> None:
    op.create_index(
        "ix_edge_job_finished", "edge_job", ["finished_at", "queue", "state"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_edge_job_finished", table_name="edge_job")
