"""SQLite as a server database: WAL, explicit transactions, and one writer at a time.

pysqlite's own transaction handling is switched off and we issue ``BEGIN`` ourselves: a
write transaction takes the write lock up front (``BEGIN IMMEDIATE``) instead of failing when
it upgrades, and a read-only one starts a plain ``BEGIN`` which, in WAL mode, never waits.

SQLite lets one transaction write at a time. The others retry in SQLite's busy handler,
which sleeps up to 100 ms between tries, so under load a write that needs a millisecond
waits tens of them. Writers of one process therefore queue on a Python lock first, and the
database passes from one to the next at once. Other processes (a second server, ``db
migrate``) still meet SQLite's own lock and busy timeout.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, event

from edgefleet.private_files import create_private, ensure_private_dir

#: Execution option of the engine behind read-only sessions (see ``session.Sessions``).
READ_ONLY = "edgefleet_read_only"
#: Seconds a writer waits for the database, in this process and in SQLite's busy handler.
BUSY_TIMEOUT = 30.0
_HOLDS_GATE = "edgefleet_holds_write_gate"


class WriteGate:
    """The process-wide queue of SQLite writers, held from ``BEGIN IMMEDIATE`` until the
    connection goes back to the pool (after its commit or rollback)."""

    def __init__(self, timeout: float = BUSY_TIMEOUT) -> None:
        self._lock = threading.Lock()
        self.timeout = timeout

    def on_begin(self, connection) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN")
            return
        info = connection.info
        if not info.get(_HOLDS_GATE):  # a connection may run several transactions
            if not self._lock.acquire(timeout=self.timeout):
                raise TimeoutError(f"no turn to write to the database in {self.timeout:g}s")
            info[_HOLDS_GATE] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.release(info)
            raise

    def on_checkin(self, _dbapi_connection, record) -> None:
        self.release(record.info)

    def on_invalidate(self, _dbapi_connection, record, _exception) -> None:
        self.release(record.info)

    def release(self, info: dict) -> None:
        if info.pop(_HOLDS_GATE, False):
            self._lock.release()


def configure(engine: Engine, url: str) -> None:
    prepare_files(engine.url.database)
    gate = WriteGate()
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", gate.on_begin)
    event.listen(engine, "checkin", gate.on_checkin)
    event.listen(engine, "invalidate", gate.on_invalidate)
    event.listen(engine, "soft_invalidate", gate.on_invalidate)


def prepare_files(database: str | None) -> None:
    """Create the database file, empty and with mode 0600, before SQLite opens it, in a
    folder made 0700 if missing. SQLite gives its -wal and -shm files the database file's
    mode, so they are private too; a file that already exists keeps the mode it has."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    ensure_private_dir(path.parent)
    create_private(path)


def _on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    cursor.close()
