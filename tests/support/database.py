"""A fresh, empty database per test: SQLite by default, PostgreSQL on request.

Set ``EDGEFLEET_TEST_PG_URL`` to a server URL (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and every test gets its own newly
created, uniquely named database on that server, dropped afterwards. The same suite then runs
unchanged on both backends. ``PgCluster`` starts such a server: a throwaway PostgreSQL
cluster in a temporary directory (``scripts/lib/postgres.sh`` and the benchmarks use it).
``SchemaTemplate`` migrates a new database the cheap way.

    python tests/support/database.py start   # prints PG_DIR=..., PG_PORT=..., PG_URL=...
    python tests/support/database.py stop DIR
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

PG_URL_ENV = "EDGEFLEET_TEST_PG_URL"
#: PostgreSQL's SQLSTATE for a deadlock, and how often emptying the test database tries.
DEADLOCK_DETECTED = "40P01"
TRUNCATE_ATTEMPTS = 3


def backend_name(url: str) -> str:
    """``sqlite`` or ``postgresql`` (the dialect, without the driver)."""
    return make_url(url).get_backend_name()


@contextmanager
def fresh_database(
    directory: Path, name: str = "edgefleet.db", server_url: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new empty database; remove it afterwards.

    Without ``EDGEFLEET_TEST_PG_URL`` this is a SQLite file ``directory/name`` (left in the
    test's tmp dir for post-mortems). With it (or ``server_url``, which wins), a database
    ``edgefleet_test_<random>`` is created on that server and dropped at exit, after
    terminating any connections still open to it.
    """
    server_url = server_url or os.environ.get(PG_URL_ENV)
    if not server_url:
        yield f"sqlite:///{directory / name}"
        return
    url = make_url(server_url)
    db_name = f"edgefleet_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        _create_database(admin, db_name)
        try:
            yield url.set(database=db_name).render_as_string(hide_password=False)
        finally:
            _drop_database(admin, db_name)
    finally:
        admin.dispose()


@contextmanager
def statements_run(engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs while the block runs, in order (an executemany
    counts once): what a cost test counts."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _create_database(admin, db_name: str) -> None:
    with admin.connect() as connection:
        connection.execute(
            text(f"CREATE DATABASE \"{db_name}\" ENCODING 'UTF8' TEMPLATE template0")
        )


def _drop_database(admin, db_name: str) -> None:
    with admin.connect() as connection:
        _disconnect_others(connection, db_name)
        # FORCE: a connection a stopped server left behind must not keep it alive.
        connection.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


def _truncate_all(engine) -> None:
    """Every table but Alembic's emptied, ids counting from 1 again, in one statement."""
    with engine.connect() as connection:
        tables = connection.execute(
            text(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = "
                "'public' AND tablename <> 'alembic_version'"
            )
        ).scalars()
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


def _disconnect_others(connection, db_name: str) -> None:
    connection.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"
        ),
        {"name": db_name},
    )


def upgrade_database(url: str) -> None:
    """Migrate ``url`` to the latest schema in-process (what ``edgefleet db migrate`` does)."""
    from edgefleet.db import migrate
    from edgefleet.db.session import make_engine

    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


class SchemaTemplate:
    """The latest schema, migrated once per test process into ``directory``: a new SQLite
    database becomes a copy of it (the same tables and revision as a migration run gives,
    for a file copy's cost); an existing file, or PostgreSQL, is migrated in place.

    ``emptied_postgres(server_url)`` is PostgreSQL's cheap way for in-process tests: one
    migrated database per test process, its tables emptied for each test (a new database
    and its migration cost about a second of the server's time per test; emptying, 30 ms).
    ``close()`` drops it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: Path | None = None
        self._postgres: tuple[object, str, str] | None = None  # admin engine, name, URL
        self._pg_template: tuple[object, str] | None = None  # admin engine, name

    def emptied_postgres(self, server_url: str) -> str:
        """The URL of this process's migrated database on ``server_url``, every table empty
        and every id counting from 1 again, as a new database migrated from scratch has
        them; the connections a previous test left open to it are closed first."""
        if self._postgres is None:
            url = make_url(server_url)
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            name = f"edgefleet_test_{uuid.uuid4().hex[:16]}"
            _create_database(admin, name)
            target = url.set(database=name).render_as_string(hide_password=False)
            self._postgres = (admin, name, target)
            upgrade_database(target)
            return target
        admin, name, target = self._postgres
        engine = create_engine(target, isolation_level="AUTOCOMMIT")
        try:
            for attempt in range(TRUNCATE_ATTEMPTS):
                with admin.connect() as connection:
                    _disconnect_others(connection, name)
                try:
                    _truncate_all(engine)
                    break
                except OperationalError as exc:
                    # A previous test's thread that reconnected after the disconnect (its
                    # transaction holds a table the TRUNCATE needs, and wants another): the
                    # TRUNCATE, chosen as the deadlock's victim, did nothing; disconnect again.
                    last = attempt == TRUNCATE_ATTEMPTS - 1
                    if last or getattr(exc.orig, "sqlstate", None) != DEADLOCK_DETECTED:
                        raise
        finally:
            engine.dispose()
        return target

    def close(self) -> None:
        """Drop the databases ``emptied_postgres`` and ``apply`` made, if any."""
        if self._postgres is not None:
            admin, name, _ = self._postgres
            self._postgres = None
            _drop_database(admin, name)
            admin.dispose()
        if self._pg_template is not None:
            admin, name = self._pg_template
            self._pg_template = None
            _drop_database(admin, name)
            admin.dispose()

    def apply(self, url: str) -> None:
        """Bring ``url`` to the latest schema, as ``edgefleet db migrate`` would."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql":
            self._apply_postgres(url)
            return
        target = Path(parsed.database or "")
        if not parsed.database or target.exists():
            upgrade_database(url)
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            made = self.directory / "template.db"
            upgrade_database(f"sqlite:///{made}")
            if Path(f"{made}-wal").exists():  # not closed cleanly: copying it would lose data
                upgrade_database(url)
                return
            self._file = made
        shutil.copyfile(self._file, target)

    def _apply_postgres(self, url: str) -> None:
        """A new database (no tables, nobody connected) is made again as a copy of this
        process's migrated template (``CREATE DATABASE ... TEMPLATE``: tens of milliseconds
        where a migration costs about a second); any other is migrated in place."""
        parsed = make_url(url)
        name = parsed.database or ""
        if self._pg_template is None:
            admin = create_engine(
                parsed.set(database=_maintenance_database()), isolation_level="AUTOCOMMIT"
            )
            template = f"edgefleet_template_{uuid.uuid4().hex[:16]}"
            _create_database(admin, template)
            self._pg_template = (admin, template)
            upgrade_database(parsed.set(database=template).render_as_string(hide_password=False))
        admin, template = self._pg_template
        if not _untouched(url):
            upgrade_database(url)
            return
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))


def _maintenance_database() -> str:
    """The database ``EDGEFLEET_TEST_PG_URL`` names (``postgres`` without it): where
    databases are created and dropped from."""
    server_url = os.environ.get(PG_URL_ENV)
    return (make_url(server_url).database if server_url else None) or "postgres"


def _untouched(url: str) -> bool:
    """Whether the PostgreSQL database at ``url`` has no tables and no other session."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar_one()
            others = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return tables == 0 and others == 0


def _pg_bin() -> Path:
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not found:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return max(found, key=lambda b: [int(p) for p in b.parent.name.split(".") if p.isdigit()])


class PgCluster:
    """initdb into a temporary directory and ``pg_ctl start`` on a free loopback port, tuned
    for throwaway data (no fsync). initdb refuses to run as root: as root the cluster runs as
    the ``postgres`` user."""

    def __init__(self, directory: Path | None = None, keep: bool = False) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="edgefleet-pg-"))
        self.keep = keep
        self.port = 0
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        argv = [*self.as_user, str(_pg_bin() / cmd[0]), *cmd[1:]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def start(self) -> PgCluster:
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        data = str(self.dir / "data")
        init = self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--no-locale")  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
        for _ in range(3):  # a port taken between free_port() and the start: try another
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
            options = (
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=400"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            log = str(self.dir / "server.log")
            started = self._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options,
                                "start")  # fmt: skip
            if started.returncode == 0:
                return self
        raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}")

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # for scripts/lib/postgres.sh
    if sys.argv[1:2] == ["start"]:
        cluster = PgCluster(keep=True).start()
        print(f"PG_DIR={cluster.dir}\nPG_PORT={cluster.port}\nPG_URL={cluster.url}")
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        PgCluster(Path(sys.argv[2])).stop()
    else:
        raise SystemExit("usage: database.py start | stop DIR")
