"""Engine and session factories; one engine per process, built from settings at start-up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """An engine tuned for its backend: SQLite gets WAL and a busy timeout for concurrency."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; we issue it ourselves so that a
        # write transaction takes the lock up front instead of failing on upgrade.
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


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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
    connection.exec_driver_sql("BEGIN IMMEDIATE")
