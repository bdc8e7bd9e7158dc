"""`edgefleet db check|current|migrate|downgrade` as an operator runs them."""

from __future__ import annotations

from sqlalchemy import Engine, text

from edgefleet.db import migrate


def test_db_commands_through_a_lifecycle(cli, migration_engine: Engine) -> None:
    head = migrate.head_revision()

    check = cli("db", "check")
    assert check.exit_code == 1
    assert "database is empty" in check.stderr

    current = cli("db", "current")
    assert current.exit_code == 0
    assert "current: none" in current.stdout and f"latest:  {head}" in current.stdout

    migrated = cli("db", "migrate")
    assert migrated.exit_code == 0, migrated.stderr
    assert f"upgraded from empty to {head}" in migrated.stdout
    assert cli("db", "check").exit_code == 0
    assert f"current: {head}" in cli("db", "current").stdout

    again = cli("db", "migrate")
    assert again.exit_code == 0
    assert f"already at revision {head}" in again.stdout

    down = cli("db", "downgrade", "base")
    assert down.exit_code == 0, down.stderr
    assert f"from {head} to base" in down.stdout
    assert cli("db", "check").exit_code == 1

    nothing = cli("db", "downgrade", "base")
    assert nothing.exit_code == 1
    assert "nothing to downgrade" in nothing.stderr


def test_db_commands_on_an_untracked_database(cli, migration_engine: Engine) -> None:
    head = migrate.head_revision()
    migrate.upgrade(migration_engine)
    with migration_engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))

    check = cli("db", "check")
    assert check.exit_code == 1
    assert "predate version tracking" in check.stderr
    assert "untracked (tables match" in cli("db", "current").stdout
    refused = cli("db", "downgrade", "base")
    assert refused.exit_code == 1 and "not version-tracked" in refused.stderr

    adopted = cli("db", "migrate")
    assert adopted.exit_code == 0, adopted.stderr
    assert f"match revision {head}: stamped" in adopted.stdout
    assert cli("db", "check").exit_code == 0


def test_db_downgrade_to_an_unknown_revision_fails_cleanly(cli) -> None:
    assert cli("db", "migrate").exit_code == 0
    bad = cli("db", "downgrade", "nope")
    assert bad.exit_code == 1
    assert "cannot downgrade to 'nope'" in bad.stderr
    assert isinstance(bad.exception, SystemExit)  # a message, not a crash
    assert cli("db", "check").exit_code == 0


def test_server_refuses_a_database_that_is_not_current(cli) -> None:
    refused = cli("server", "--port", "1")
    assert refused.exit_code == 1
    assert "run `edgefleet db migrate`" in refused.stderr


def test_an_unreachable_database_is_a_message_not_a_traceback(cli, monkeypatch) -> None:
    monkeypatch.setenv("EDGEFLEET_DB_URL", "postgresql+psycopg://edgefleet:pw@127.0.0.1:1/nope")
    result = cli("db", "migrate")
    assert result.exit_code == 1
    assert "cannot migrate: cannot use the database" in result.stderr
    assert "pw" not in result.stderr  # the password stays hidden
    assert isinstance(result.exception, SystemExit)
