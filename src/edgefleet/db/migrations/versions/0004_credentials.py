"""credentials: operator tokens and worker credentials, join tokens, revocation, secret env

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_tables={
        "edge_credential": "id token_hash kind name role labels created_at created_by "
        "expires_at revoked_at",
        "edge_join_token": "id token_hash created_at created_by expires_at uses_left labels",
    },
    add_columns={"edge_worker": "revoked_at", "edge_job": "secret_env"},
    add_indexes={"edge_credential": ["ix_edge_credential_name"]},
)


def upgrade() -> None:
    op.create_table(
        "edge_credential",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_edge_credential_name", "edge_credential", ["kind", "name"])
    op.create_table(
        "edge_join_token",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("secret_env", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("edge_job", schema=None) as batch_op:
        batch_op.drop_column("secret_env")
    with op.batch_alter_table("edge_worker", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
    op.drop_table("edge_join_token")
    op.drop_index("ix_edge_credential_name", table_name="edge_credential")
    op.drop_table("edge_credential")
