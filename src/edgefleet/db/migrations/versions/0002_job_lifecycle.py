"""job lifecycle: retries, timeouts, env/cwd, cancel, history, log cap, idempotent fetches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JOB_COLUMNS = (
    "retries retry_delay timeout env cwd not_before cancel_requested_at cancel_notified "
    "claim_seq log_bytes log_truncated"
)

fingerprint = SchemaChange(
    add_tables={
        "edge_job_event": "id job_id at event state attempt worker_hostname exit_code reason actor"
    },
    add_columns={"edge_job": JOB_COLUMNS, "edge_worker": "fetch_seq"},
    add_indexes={"edge_job_event": ["ix_edge_job_event_job"]},
)


def upgrade() -> None:
    # Existing rows (and rows written by an older edgefleet) get the defaults of a new job.
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("retry_delay", sa.Double(), nullable=False, server_default="10")
        )
        batch_op.add_column(sa.Column("timeout", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column("env", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("cwd", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_notified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("claim_seq", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("log_bytes", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("log_truncated", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fetch_seq", sa.Integer(), nullable=False, server_default="0")
        )

    op.create_table(
        "edge_job_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_hostname", sa.String(length=255), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["edge_job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("edge_job_event", schema=None) as batch_op:
        batch_op.create_index("ix_edge_job_event_job", ["job_id", "attempt"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("edge_job_event", schema=None) as batch_op:
        batch_op.drop_index("ix_edge_job_event_job")
    op.drop_table("edge_job_event")

    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.drop_column("fetch_seq")

    # A job cancelled under 0002 has no state of its own in 0001: keep it finished, as failed.
    op.execute(
        sa.text(
            "UPDATE edge_job SET state = 'failed', "
            "reason = COALESCE(reason, 'cancelled') WHERE state = 'cancelled'"
        )
    )
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        for column in reversed(JOB_COLUMNS.split()):
            batch_op.drop_column(column)
