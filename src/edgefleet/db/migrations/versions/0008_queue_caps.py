"""queue caps: a fleet-wide limit on the running jobs of a queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(add_tables={"edge_queue_cap": "queue concurrency bound"})


def upgrade() -> None:
    op.create_table(
        "edge_queue_cap",
        sa.Column("queue", sa.String(255), primary_key=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("bound", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("edge_queue_cap")
