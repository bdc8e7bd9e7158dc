"""Alembic environment: the connection is handed in by edgefleet.db.migrate, never read from ini."""

from __future__ import annotations

from alembic import context

from edgefleet.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only alter tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
