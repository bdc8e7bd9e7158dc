"""A fresh, empty database per test: SQLite by default, PostgreSQL on request.

Set ``EDGEFLEET_TEST_PG_URL`` to a server URL (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and every test gets its own newly
created, uniquely named database on that server, dropped afterwards. The same suite then runs
unchanged on both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL_ENV = "EDGEFLEET_TEST_PG_URL"


def backend_name(url: str) -> str:
    """``sqlite`` or ``postgresql`` (the dialect, without the driver)."""
    return make_url(url).get_backend_name()


@contextmanager
def fresh_database(directory: Path, name: str = "edgefleet.db") -> Iterator[str]:
    """Yield the URL of a new empty database; remove it afterwards.

    Without ``EDGEFLEET_TEST_PG_URL`` this is a SQLite file ``directory/name`` (left in the
    test's tmp dir for post-mortems). With it, a database ``edgefleet_test_<random>`` is created
    on that server and dropped at exit, after terminating any connections still open to it.
    """
    server_url = os.environ.get(PG_URL_ENV)
    if not server_url:
        yield f"sqlite:///{directory / name}"
        return
    url = make_url(server_url)
    db_name = f"edgefleet_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(
                text(f"CREATE DATABASE \"{db_name}\" ENCODING 'UTF8' TEMPLATE template0")
            )
        try:
            yield url.set(database=db_name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": db_name},
                )
                # FORCE: a connection a stopped server left behind must not keep it alive.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def upgrade_database(url: str) -> None:
    """Migrate ``url`` to the latest schema in-process (what ``edgefleet db migrate`` does)."""
    from edgefleet.db import migrate
    from edgefleet.db.session import make_engine

    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
