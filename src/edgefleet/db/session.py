"""Engine and session factories; one engine per process, built from settings at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: Execution option of the engine behind read-only sessions (see ``Sessions``).
READ_ONLY = "edgefleet_read_only"


def make_engine(url: str) -> Engine:
    """An engine tuned for its backend: SQLite gets WAL and a busy timeout for concurrency."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling is switched off; we issue BEGIN ourselves so
        # that a write transaction takes the lock up front instead of failing on upgrade.
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args = {}
    if url.startswith("postgresql"):
        # A cluster initialised without a locale defaults to SQL_ASCII, and psycopg then hands
        # back text as bytes; ask for UTF-8 so every server behaves alike.
        connect_args["client_encoding"] = "utf8"
    return create_engine(
        url, connect_args=connect_args, pool_size=20, max_overflow=20, pool_pre_ping=True
    )


class Sessions(sessionmaker[Session]):
    """``db()`` opens a session for reading, ``db.begin()`` a transaction for writing.

    On SQLite the two differ: a write takes the database's write lock up front (``BEGIN
    IMMEDIATE``), while a read starts a plain ``BEGIN`` and, in WAL mode, never waits for
    writers. Every change therefore goes through ``db.begin()``.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self.writer = engine

    @contextmanager
    def begin(self) -> Iterator[Session]:  # type: ignore[override]
        with self(bind=self.writer) as session, session.begin():
            yield session


def make_sessionmaker(engine: Engine) -> Sessions:
    return Sessions(engine)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(connection) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
