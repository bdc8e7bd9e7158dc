"""Every migration up and down, its fingerprint, and the models against the migrated schema."""

from __future__ import annotations

import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from edgefleet.db import migrate
from edgefleet.db.fingerprint import Shape, live_shape
from edgefleet.db.models import Base


def _shape(engine: Engine) -> Shape:
    with engine.connect() as connection:
        return live_shape(connection)


def test_history_is_linear_and_every_revision_has_a_fingerprint() -> None:
    revisions = migrate.revisions()
    assert revisions[-1] == migrate.head_revision()
    assert len(set(revisions)) == len(revisions)
    shapes = migrate.expected_shapes()  # raises for a revision without a fingerprint
    assert [revision for revision, _ in shapes] == revisions


def test_each_file_is_named_after_its_revision_and_the_newest_is_head() -> None:
    """The server's start-up check reads the head from the file names (no Alembic)."""
    files = sorted((migrate.MIGRATIONS_DIR / "versions").glob("*.py"))
    assert [file.name for file in files if not migrate.REVISION_FILE.match(file.name)] == []
    assert [file.name[:4] for file in files] == migrate.revisions()
    assert migrate.newest_revision_file() == migrate.head_revision()


def test_a_current_database_is_accepted_without_loading_alembic(
    migration_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(migration_engine)
    for name in [name for name in sys.modules if name.split(".")[0] == "alembic"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    monkeypatch.setitem(sys.modules, "alembic", None)
    migrate.require_current(migration_engine)


def test_a_database_behind_or_empty_is_refused_with_what_to_do(migration_engine: Engine) -> None:
    with pytest.raises(migrate.SchemaNotCurrent, match="database is empty: run `edgefleet db"):
        migrate.require_current(migration_engine)
    *_, before, head = migrate.revisions()
    migrate.upgrade(migration_engine, before)
    with pytest.raises(migrate.SchemaNotCurrent, match=f"at revision {before}.*pending: {head}"):
        migrate.require_current(migration_engine)
    migrate.upgrade(migration_engine)
    migrate.require_current(migration_engine)


def test_every_revision_upgrades_and_downgrades(migration_engine: Engine) -> None:
    expected = dict(migrate.expected_shapes())
    previous: list[str | None] = [None, *migrate.revisions()[:-1]]

    for revision in migrate.revisions():
        result = migrate.upgrade(migration_engine, revision)
        assert result.after == revision
        assert migrate.current_revision(migration_engine) == revision
        assert _shape(migration_engine) == expected[revision], revision

    for revision, before in reversed(list(zip(migrate.revisions(), previous, strict=True))):
        result = migrate.downgrade(migration_engine, before or "base")
        assert (result.before, result.after) == (revision, before)
        assert _shape(migration_engine) == (expected[before] if before else Shape())

    # ... and up again over what the downgrades left behind.
    assert migrate.upgrade(migration_engine).after == migrate.head_revision()
    assert _shape(migration_engine) == expected[migrate.head_revision()]


def test_models_match_the_migrated_schema(migration_engine: Engine) -> None:
    migrate.upgrade(migration_engine)
    with migration_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrate_is_idempotent(migration_engine: Engine) -> None:
    head = migrate.head_revision()
    first = migrate.upgrade(migration_engine)
    assert (first.before, first.after, first.adopted) == (None, head, None)
    again = migrate.upgrade(migration_engine)
    assert (again.before, again.after, again.adopted) == (head, head, None)
    assert not again.changed
    assert migrate.schema_status(migration_engine).is_current
