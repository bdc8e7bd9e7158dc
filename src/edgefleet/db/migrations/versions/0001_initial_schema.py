"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The tables this revision creates, for recognising databases built before version tracking.
fingerprint = SchemaChange(
    add_tables={
        "edge_audit": "id at actor target field old_value new_value comment",
        "edge_job": (
            "id command queue state priority slots attempt worker_hostname exit_code reason "
            "queued_at started_at finished_at"
        ),
        "edge_worker": (
            "hostname reported_state labels flag_concurrency concurrency_override flag_queues "
            "queues_override maintenance_requested maintenance_comment shutdown_requested "
            "desired_version applied_version applied_concurrency applied_at instance_id pid "
            "heartbeat_interval sysinfo first_online started_at last_heartbeat"
        ),
        "edge_job_log": "job_id attempt seq data created_at",
    },
    add_indexes={
        "edge_audit": ["ix_edge_audit_target_at"],
        "edge_job": ["ix_edge_job_claim", "ix_edge_job_worker_state"],
    },
)


def upgrade() -> None:
    op.create_table(
        "edge_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("edge_audit", schema=None) as batch_op:
        batch_op.create_index("ix_edge_audit_target_at", ["target", "at"], unique=False)

    op.create_table(
        "edge_job",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_hostname", sa.String(length=255), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.create_index(
            "ix_edge_job_claim", ["state", "queue", "priority", "id"], unique=False
        )
        batch_op.create_index(
            "ix_edge_job_worker_state", ["worker_hostname", "state"], unique=False
        )

    op.create_table(
        "edge_worker",
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("reported_state", sa.String(length=32), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("flag_concurrency", sa.Integer(), nullable=False),
        sa.Column("concurrency_override", sa.Integer(), nullable=True),
        sa.Column("flag_queues", sa.JSON(), nullable=False),
        sa.Column("queues_override", sa.JSON(), nullable=True),
        sa.Column("maintenance_requested", sa.Boolean(), nullable=False),
        sa.Column("maintenance_comment", sa.Text(), nullable=True),
        sa.Column("shutdown_requested", sa.Boolean(), nullable=False),
        sa.Column("desired_version", sa.Integer(), nullable=False),
        sa.Column("applied_version", sa.Integer(), nullable=False),
        sa.Column("applied_concurrency", sa.Integer(), nullable=True),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_interval", sa.Double(), nullable=False),
        sa.Column("sysinfo", sa.JSON(), nullable=False),
        sa.Column("first_online", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("last_heartbeat", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("hostname"),
    )
    op.create_table(
        "edge_job_log",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["edge_job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "attempt", "seq"),
    )


def downgrade() -> None:
    op.drop_table("edge_job_log")
    op.drop_table("edge_worker")
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.drop_index("ix_edge_job_worker_state")
        batch_op.drop_index("ix_edge_job_claim")

    op.drop_table("edge_job")
    with op.batch_alter_table("edge_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_edge_audit_target_at")

    op.drop_table("edge_audit")
