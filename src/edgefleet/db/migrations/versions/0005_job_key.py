"""job key: a name the submitter chose for a job, to find it again in batched lookups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_columns={"edge_job": "key"},
    add_indexes={"edge_job": ["ix_edge_job_key"]},
)


def upgrade() -> None:
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sa.String(255), nullable=True))
        batch_op.create_index("ix_edge_job_key", ["key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.drop_index("ix_edge_job_key")
        batch_op.drop_column("key")
