"""`edgefleet db check|current|migrate|downgrade` as an operator runs them."""

from __future__ import annotations

from sqlalchemy import Engine, text

from edgefleet.db import migrate


def test_db_commands_through_a_lifecycle(run_cli, migration_engine: Engine) -> None:
    head = migrate.head_revision()

    check = run_cli("db", "check")
    assert check.returncode == 1
    assert "database is empty" in check.stderr

    current = run_cli("db", "current")
    assert current.returncode == 0
    assert "current: none" in current.stdout and f"latest:  {head}" in current.stdout

    migrated = run_cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"upgraded from empty to {head}" in migrated.stdout
    assert run_cli("db", "check").returncode == 0
    assert f"current: {head}" in run_cli("db", "current").stdout

    again = run_cli("db", "migrate")
    assert again.returncode == 0
    assert f"already at revision {head}" in again.stdout

    down = run_cli("db", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert f"from {head} to base" in down.stdout
    assert run_cli("db", "check").returncode == 1

    nothing = run_cli("db", "downgrade", "base")
    assert nothing.returncode == 1
    assert "nothing to downgrade" in nothing.stderr


def test_db_commands_on_an_untracked_database(run_cli, migration_engine: Engine) -> None:
    head = migrate.head_revision()
    migrate.upgrade(migration_engine)
    with migration_engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))

    check = run_cli("db", "check")
    assert check.returncode == 1
    assert "predate version tracking" in check.stderr
    assert "untracked (tables match" in run_cli("db", "current").stdout
    refused = run_cli("db", "downgrade", "base")
    assert refused.returncode == 1 and "not version-tracked" in refused.stderr

    adopted = run_cli("db", "migrate")
    assert adopted.returncode == 0, adopted.stderr
    assert f"match revision {head}: stamped" in adopted.stdout
    assert run_cli("db", "check").returncode == 0


def test_db_downgrade_to_an_unknown_revision_fails_cleanly(run_cli) -> None:
    assert run_cli("db", "migrate").returncode == 0
    bad = run_cli("db", "downgrade", "nope")
    assert bad.returncode == 1
    assert "cannot downgrade to 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert run_cli("db", "check").returncode == 0


def test_server_refuses_a_database_that_is_not_current(run_cli) -> None:
    refused = run_cli("server", "--port", "1")
    assert refused.returncode == 1
    assert "run `edgefleet db migrate`" in refused.stderr
