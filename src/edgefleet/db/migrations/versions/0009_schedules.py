"""schedules: time windows of concurrency for label groups, a layer above the label rules

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_tables={
        "edge_schedule": "id name selector cron timezone duration_seconds concurrency "
        "created_at created_by window_start window_end",
    },
)


def upgrade() -> None:
    op.create_table(
        "edge_schedule",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("edge_schedule")
