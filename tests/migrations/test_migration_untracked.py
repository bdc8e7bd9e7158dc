"""Databases whose tables predate version tracking: recognised, stamped, upgraded; never guessed.

An untracked database is made by migrating to a revision and dropping ``alembic_version``.
Besides the real history, a scratch copy of it with one more revision on top ("scratch",
which adds a column and an index to ``edge_job``) shows that an old schema is upgraded from the
revision it matches and not stamped at head, and how a later revision plugs in its
fingerprint, whatever the real history holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from edgefleet.db import migrate

SCRATCH_REVISION = '''"""scratch revision for the tests"""

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange

revision = "scratch"
down_revision = {down_revision!r}
branch_labels = None
depends_on = None

fingerprint = SchemaChange(
    add_columns={{"edge_job": "scratch_seconds"}},
    add_indexes={{"edge_job": "ix_edge_job_scratch"}},
)


def _recreate() -> str:
    # On SQLite, copy the table the way any change beyond ADD COLUMN does.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("edge_job", recreate=_recreate()) as batch_op:
        batch_op.add_column(sa.Column("scratch_seconds", sa.Integer(), nullable=True))
        batch_op.create_index("ix_edge_job_scratch", ["scratch_seconds"])


def downgrade() -> None:
    with op.batch_alter_table("edge_job", recreate=_recreate()) as batch_op:
        batch_op.drop_index("ix_edge_job_scratch")
        batch_op.drop_column("scratch_seconds")
'''


@pytest.fixture
def scratch_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real history plus "scratch" on top; returns the real head it follows."""
    real_head = migrate.head_revision()
    scratch = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scratch, ignore=shutil.ignore_patterns("__pycache__"))
    module = SCRATCH_REVISION.format(down_revision=real_head)
    (scratch / "versions" / "9999_scratch.py").write_text(module)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scratch)
    assert migrate.revisions()[-2:] == [real_head, "scratch"]
    return real_head


def _untracked_at(engine: Engine, revision: str) -> None:
    migrate.upgrade(engine, revision)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    assert migrate.current_revision(engine) is None


def _add_job_with_log(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO edge_job (id, command, queue, state, priority, slots, attempt, "
                "queued_at) VALUES (1, '[\"true\"]', 'default', 'success', 0, 1, 1, "
                "'2026-01-01 12:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO edge_job_log (job_id, attempt, seq, data, created_at) "
                "VALUES (1, 1, 0, 'hello', '2026-01-01 12:00:00')"
            )
        )


def _log_rows(engine: Engine) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text("SELECT job_id, data FROM edge_job_log"))]


@pytest.mark.parametrize("revision", migrate.revisions())
def test_untracked_tables_are_recognised_and_upgraded(
    migration_engine: Engine, revision: str
) -> None:
    _untracked_at(migration_engine, revision)
    _add_job_with_log(migration_engine)

    status = migrate.schema_status(migration_engine)
    assert not status.is_current
    assert status.detected == revision
    assert "predate version tracking" in status.problems[0]

    result = migrate.upgrade(migration_engine)
    assert (result.before, result.adopted, result.after) == (
        None,
        revision,
        migrate.head_revision(),
    )
    assert migrate.schema_status(migration_engine).is_current
    assert _log_rows(migration_engine) == [(1, "hello")]


def test_old_untracked_schema_gets_the_migrations_it_lacks(
    migration_engine: Engine, scratch_history: str
) -> None:
    _untracked_at(migration_engine, scratch_history)
    _add_job_with_log(migration_engine)

    result = migrate.upgrade(migration_engine)

    assert (result.adopted, result.after) == (scratch_history, "scratch")
    columns = {c["name"] for c in inspect(migration_engine).get_columns("edge_job")}
    assert "scratch_seconds" in columns
    # Rebuilding edge_job must not cascade into the log rows that refer to it.
    assert _log_rows(migration_engine) == [(1, "hello")]
    assert migrate.schema_status(migration_engine).is_current


def test_untracked_schema_at_a_later_revision_is_stamped_there(
    migration_engine: Engine, scratch_history: str
) -> None:
    _untracked_at(migration_engine, "scratch")
    result = migrate.upgrade(migration_engine)
    assert (result.adopted, result.after) == ("scratch", "scratch")
    # The scratch revision also goes down and up cleanly, with the data intact.
    _add_job_with_log(migration_engine)
    assert migrate.downgrade(migration_engine, scratch_history).after == scratch_history
    assert migrate.upgrade(migration_engine).after == "scratch"
    assert _log_rows(migration_engine) == [(1, "hello")]


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        ("ALTER TABLE edge_job ADD COLUMN surprise INTEGER", "unexpected column edge_job.surprise"),
        ("DROP TABLE edge_audit", "missing table edge_audit"),
        ("DROP INDEX ix_edge_job_worker_state", "missing index edge_job.ix_edge_job_worker_state"),
    ],
)
def test_untracked_schema_matching_no_revision_is_refused(
    migration_engine: Engine, tamper: str, complaint: str
) -> None:
    _untracked_at(migration_engine, migrate.head_revision())
    with migration_engine.begin() as connection:
        connection.execute(text(tamper))

    with pytest.raises(migrate.UnknownSchema, match="match no known revision") as refused:
        migrate.upgrade(migration_engine)

    assert complaint in str(refused.value)
    assert migrate.current_revision(migration_engine) is None  # nothing was stamped
    status = migrate.schema_status(migration_engine)
    assert not status.is_current and status.detected is None


def test_unknown_tracked_revision_is_refused(migration_engine: Engine) -> None:
    migrate.upgrade(migration_engine)
    with migration_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaNotCurrent, match="newer edgefleet"):
        migrate.upgrade(migration_engine)
    with pytest.raises(migrate.SchemaNotCurrent, match="does not know"):
        migrate.require_current(migration_engine)


def test_tables_of_other_applications_are_ignored(migration_engine: Engine) -> None:
    with migration_engine.begin() as connection:
        connection.execute(text("CREATE TABLE someone_else (id INTEGER PRIMARY KEY)"))
    result = migrate.upgrade(migration_engine)
    assert (result.before, result.adopted) == (None, None)
    assert migrate.schema_status(migration_engine).is_current
