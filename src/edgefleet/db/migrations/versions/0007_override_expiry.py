"""override expiry: an operator's concurrency may end by itself at a given time

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(add_columns={"edge_worker": "concurrency_override_until"})


def upgrade() -> None:
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency_override_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.drop_column("concurrency_override_until")
