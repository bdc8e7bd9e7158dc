"""concurrency rules: label rules and the fleet default, their result on each worker row

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_tables={
        "edge_concurrency_rule": "id selector_text selector concurrency set_at set_by",
    },
    add_columns={"edge_worker": "layer_concurrency layer_source layer_rule"},
)


def upgrade() -> None:
    op.create_table(
        "edge_concurrency_rule",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("selector_text", sa.Text(), nullable=False, unique=True),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.Column("set_by", sa.String(255), nullable=False),
    )
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("layer_concurrency", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("layer_source", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("layer_rule", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.drop_column("layer_rule")
        batch_op.drop_column("layer_source")
        batch_op.drop_column("layer_concurrency")
    op.drop_table("edge_concurrency_rule")
