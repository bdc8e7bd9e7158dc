"""The server's SQLite checkpoints run in a thread of their own, off the commits' path."""

from __future__ import annotations

import sqlite3

import pytest

from edgefleet.db.sqlite import Checkpointer
from support import wait_until

pytestmark = pytest.mark.same_on_every_backend


def test_the_log_reaches_the_database_file_without_a_commit_paying(tmp_path):
    database = tmp_path / "x.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies the log
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 200,)] * 2000)
    writer.execute("COMMIT")
    before = database.stat().st_size
    assert before < 100_000  # the rows are in the log, not yet in the file

    checkpointer = Checkpointer(str(database), interval=0.05)
    checkpointer.start()
    try:
        wait_until(lambda: database.stat().st_size > 400_000, timeout=10, message="a checkpoint")
    finally:
        checkpointer.stop()
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    writer.close()
