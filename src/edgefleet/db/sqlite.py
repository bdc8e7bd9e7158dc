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

import logging
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import Engine, event

from edgefleet.private_files import create_private, ensure_private_dir

log = logging.getLogger(__name__)

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


class Checkpointer:
    """Copies the write-ahead log back into the database file from a thread of its own.

    SQLite does it by itself in the connection whose commit takes the log past 1,000 pages:
    that commit then waits for the copy and its fsync (40-100 ms on a plain disk) while it
    still holds the write lock, so every writer behind it waits too, and a fleet-wide
    change that crosses the line takes twice as long. A server checkpoints here every
    ``interval`` seconds instead, in PASSIVE mode, which waits for no reader or writer; the
    log then rarely grows far enough for a commit to pay. SQLite's own checkpoint stays on
    as the fallback.
    """

    def __init__(self, database: str, interval: float = 0.5) -> None:
        self.database, self.interval = database, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        connection = sqlite3.connect(self.database, isolation_level=None)
        try:
            while not self._stopping.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again
                    log.debug("checkpoint of %s failed: %s", self.database, exc)
        finally:
            connection.close()


def background_checkpoints(engine: Engine) -> Checkpointer | None:
    """A started ``Checkpointer`` for a SQLite file database, else None."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    checkpointer = Checkpointer(database)
    checkpointer.start()
    return checkpointer


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
