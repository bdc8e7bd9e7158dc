"""Schema migrations through Alembic, driven from code so no alembic.ini is needed.

Every change of the schema runs on one connection that holds a cross-process lock (an
advisory lock on PostgreSQL, a file lock beside the database on SQLite), inside one
transaction: two ``edgefleet db migrate`` at once are safe, the second waits and then finds
nothing to do. A database whose tables predate version tracking is recognised by its shape
(see :mod:`edgefleet.db.fingerprint`), stamped at the revision it matches, and upgraded from
there; it is never stamped straight at head.

Alembic is imported only where a migration command or a mismatch needs it: a server starting
on a current database checks its revision with one query (:func:`require_current`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from edgefleet.db.fingerprint import SchemaChange, Shape, live_shape
from edgefleet.private_files import FILE_MODE, ensure_private_dir

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: A migration's file is named after its revision: ``NNNN_what_it_does.py``, numbered in order
#: (tests/migrations/test_migration_revisions.py holds every file to it).
REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")

#: Key of the PostgreSQL advisory lock held while migrating (the bytes of "edgeflt1").
ADVISORY_LOCK_KEY = 0x65646765666C7431


class MigrationError(RuntimeError):
    """A migration command cannot go ahead; the message says why and what to do."""


class SchemaNotCurrent(MigrationError):
    """The database is behind (or ahead of) the code's schema."""


class UnknownSchema(MigrationError):
    """Untracked tables that match no known revision: refusing to guess."""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None  #: tracked revision before, None if empty or untracked
    after: str | None
    adopted: str | None = None  #: revision stamped on an untracked database, if any

    @property
    def changed(self) -> bool:
        return self.adopted is not None or self.before != self.after


@dataclass(frozen=True)
class SchemaStatus:
    head: str
    current: str | None
    #: For an untracked database: the revision its tables match (None if empty or no match).
    detected: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def is_current(self) -> bool:
        return not self.problems


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    return _scripts().get_current_head()


def newest_revision_file() -> str | None:
    """The head revision as the versions folder names it, read without Alembic: the highest
    ``NNNN`` of its ``NNNN_*.py`` files (None if it has none)."""
    numbers = [
        match.group(1)
        for match in map(REVISION_FILE.match, os.listdir(MIGRATIONS_DIR / "versions"))
        if match
    ]
    return max(numbers, default=None)


def revisions() -> list[str]:
    """All revisions, oldest first (the history is linear)."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def fingerprint(revision: str) -> SchemaChange:
    script = _scripts().get_revision(revision)
    change = getattr(script.module, "fingerprint", None)
    if not isinstance(change, SchemaChange):
        raise MigrationError(f"migration {revision} declares no `fingerprint = SchemaChange(...)`")
    return change


def expected_shapes() -> list[tuple[str, Shape]]:
    """The shape of edgefleet's tables at each revision, oldest first."""
    shapes, shape = [], Shape()
    for revision in revisions():
        shape = shape.apply(fingerprint(revision))
        shapes.append((revision, shape))
    return shapes


def _tracked_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _tracked_revision(connection)


def _is_known(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def detect_revision(connection: Connection) -> str | None:
    """The revision an untracked database's tables were built at; None if it has none.

    Revisions that leave the shape unchanged cannot be told apart: the oldest one is taken,
    so a migration is at worst run again (and must then be harmless), never skipped.
    """
    live = live_shape(connection)
    if not live.columns:
        return None
    shapes = expected_shapes()
    for revision, shape in shapes:
        if shape == live:
            return revision
    nearest, shape = min(shapes, key=lambda item: len(item[1].differences(live)))
    raise UnknownSchema(
        "the database has edgefleet tables but no version tracking, and they match no known "
        f"revision (nearest is {nearest}: {'; '.join(shape.differences(live))}); "
        "refusing to guess: repair the schema by hand or restore a backup"
    )


def upgrade(engine: Engine, revision: str = "head") -> MigrationResult:
    """Bring the database to ``revision``; adopt an untracked one first. Safe to repeat."""
    with migration_lock(engine) as connection:
        return upgrade_locked(connection, revision)


def upgrade_locked(connection: Connection, revision: str = "head") -> MigrationResult:
    """:func:`upgrade` on a connection from :func:`migration_lock`, in one transaction."""
    from alembic import command

    with connection.begin():
        before = _tracked_revision(connection)
        adopted = None
        if before is None:
            adopted = detect_revision(connection)
            if adopted is not None:
                command.stamp(_config(connection), adopted)
        elif not _is_known(before):
            raise SchemaNotCurrent(_unknown_revision_message(before))
        command.upgrade(_config(connection), revision)
        _check_foreign_keys(connection)
        return MigrationResult(before, _tracked_revision(connection), adopted)


def downgrade(engine: Engine, revision: str) -> MigrationResult:
    """Go back to an older ``revision`` ('base' drops every table)."""
    from alembic import command

    with migration_lock(engine) as connection, connection.begin():
        before = _tracked_revision(connection)
        if before is None:
            if live_shape(connection).columns:
                raise MigrationError(
                    "the database is not version-tracked yet: run `edgefleet db migrate` first"
                )
            raise MigrationError("the database is empty: there is nothing to downgrade")
        if not _is_known(before):
            raise SchemaNotCurrent(_unknown_revision_message(before))
        command.downgrade(_config(connection), revision)
        _check_foreign_keys(connection)
        return MigrationResult(before, _tracked_revision(connection))


def schema_status(engine: Engine, *, compare_shape: bool = True) -> SchemaStatus:
    """Whether the database is at head, and if not, why (for `db check` and server start)."""
    head = head_revision()
    with engine.connect() as connection:
        current = _tracked_revision(connection)
        if current is None:
            return _untracked_status(connection, head)
        if not _is_known(current):
            return SchemaStatus(head, current, problems=[_unknown_revision_message(current)])
        if current != head:
            pending = revisions()[revisions().index(current) + 1 :]
            return SchemaStatus(
                head,
                current,
                problems=[
                    f"database schema is at revision {current}, this edgefleet needs {head} "
                    f"(pending: {', '.join(pending)}): run `edgefleet db migrate`"
                ],
            )
        if compare_shape:
            differences = dict(expected_shapes())[head].differences(live_shape(connection))
            if differences:
                return SchemaStatus(
                    head,
                    current,
                    problems=[
                        f"database is stamped at {head} but its tables differ from it: "
                        + "; ".join(differences)
                    ],
                )
        return SchemaStatus(head, current)


def _untracked_status(connection: Connection, head: str) -> SchemaStatus:
    try:
        detected = detect_revision(connection)
    except UnknownSchema as exc:
        return SchemaStatus(head, None, problems=[str(exc)])
    if detected is None:
        problem = "database is empty: run `edgefleet db migrate`"
    else:
        problem = (
            f"database tables predate version tracking (they match revision {detected}): "
            f"run `edgefleet db migrate` to adopt them and upgrade to {head}"
        )
    return SchemaStatus(head, None, detected, [problem])


def require_current(engine: Engine) -> None:
    """Refuse to serve a database whose schema is not the one this code was written for.

    A database at head passes on one query; only another answer loads Alembic, for the
    message that says what is wrong."""
    if _stamped_revisions(engine) == [newest_revision_file()]:
        return
    status = schema_status(engine, compare_shape=False)
    if not status.is_current:
        raise SchemaNotCurrent(status.problems[0])


def _stamped_revisions(engine: Engine) -> list[str] | None:
    """The rows of Alembic's version table, None if there is no such table (or no database)."""
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return [row[0] for row in rows]
    except DBAPIError:
        return None


def _unknown_revision_message(revision: str) -> str:
    return (
        f"database schema is at revision {revision}, which this edgefleet does not know "
        f"(its newest is {head_revision()}): was it migrated by a newer edgefleet?"
    )


# --- the migration connection: locked, and on SQLite with foreign keys held off ----------------


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the lock that serialises migrations of this database across
    processes and hosts; whoever comes second waits here."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.connect() as connection, _advisory_lock(connection):
            yield connection
    elif dialect == "sqlite":
        with (
            _file_lock(engine.url.database),
            engine.connect() as connection,
            _sqlite_foreign_keys_off(connection),
        ):
            yield connection
    else:
        with engine.connect() as connection:
            yield connection


@contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    """A session-level advisory lock: one migration per database at a time."""
    got = connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})").scalar()
    if not got:
        log.warning("another edgefleet migration is running on this database; waiting for it")
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})")
    connection.commit()
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")
            connection.commit()
        except Exception:  # a broken connection must not go back to the pool still locked
            connection.invalidate()


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    """An exclusive lock on a file beside the SQLite database (none for in-memory ones)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = Path(f"{database}.migrate-lock")
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another edgefleet migration is running on %s; waiting for it", database)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite alters a table by copying and dropping it; with foreign keys on, dropping the
    old copy would cascade-delete the rows that refer to it. The pragma only takes effect
    outside a transaction, so it is set on the raw connection before the migration begins;
    :func:`_check_foreign_keys` then verifies the result before commit."""
    raw = connection.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise MigrationError(f"the migration left rows with dangling foreign keys: {broken[:5]}")
