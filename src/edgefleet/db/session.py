"""Engine and session factories; one engine per process, built from settings at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.db import sqlite
from edgefleet.db.sqlite import READ_ONLY

#: Connections kept open: more than the server's database threads (16, see
#: ``server.context.DATABASE_THREADS``), so those threads, the sweeper and a PostgreSQL
#: replica's announcements (NOTIFY) never open and close a connection per request.
POOL_SIZE = 40


def make_engine(url: str) -> Engine:
    """An engine tuned for its backend (SQLite: see ``sqlite``)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=POOL_SIZE, max_overflow=10
        )
        sqlite.configure(engine, url)
        return engine
    connect_args = {}
    if url.startswith("postgresql"):
        # A cluster initialised without a locale defaults to SQL_ASCII, and psycopg then hands
        # back text as bytes; ask for UTF-8 so every server behaves alike.
        connect_args["client_encoding"] = "utf8"
    # No pre-ping: it costs a round trip on every checkout, a tenth of a heartbeat's time.
    # A connection the database dropped fails its one request instead (every worker call is
    # retried), and that failure makes the pool discard all connections older than it.
    return create_engine(url, connect_args=connect_args, pool_size=POOL_SIZE, max_overflow=5)


class Sessions(sessionmaker[Session]):
    """``db()`` opens a session for reading, ``db.begin()`` a transaction for writing.

    On SQLite the two differ: a write takes the database's write lock up front (``BEGIN
    IMMEDIATE``), while a read starts a plain ``BEGIN`` and, in WAL mode, never waits for
    writers. Every change therefore goes through ``db.begin()``.
    """

    def __init__(self, engine: Engine) -> None:
        #: For hot paths that skip the ORM: ``reader.connect()`` reads, ``writer.begin()``
        #: writes, on the same terms as sessions.
        self.reader = engine.execution_options(**{READ_ONLY: True})
        self.writer = engine
        super().__init__(self.reader, expire_on_commit=False)

    @contextmanager
    def begin(self) -> Iterator[Session]:  # type: ignore[override]
        with self(bind=self.writer) as session, session.begin():
            yield session


def make_sessionmaker(engine: Engine) -> Sessions:
    return Sessions(engine)
