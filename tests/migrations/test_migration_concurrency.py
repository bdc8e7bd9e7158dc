"""`edgefleet db migrate` from several processes at once: one migrates, the others wait."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine

from edgefleet.db import migrate


def _wait_for_text(path: Path, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text():
        assert time.monotonic() < deadline, f"{needle!r} never appeared in {path.read_text()!r}"
        time.sleep(0.05)


def test_concurrent_migrate_processes(spawn_cli, tmp_path: Path, migration_engine) -> None:
    outputs = [(tmp_path / f"out{i}", tmp_path / f"err{i}") for i in range(2)]
    processes = []
    for out, err in outputs:
        with out.open("w") as stdout, err.open("w") as stderr:
            processes.append(spawn_cli("db", "migrate", stdout=stdout, stderr=stderr))
    codes = [process.wait(timeout=120) for process in processes]

    texts = [out.read_text() + err.read_text() for out, err in outputs]
    assert codes == [0, 0], texts
    head = migrate.head_revision()
    assert sum(f"upgraded from empty to {head}" in t for t in texts) == 1, texts
    assert sum(f"already at revision {head}" in t for t in texts) == 1, texts
    assert migrate.schema_status(migration_engine).is_current


def test_second_migration_waits_then_finds_nothing_to_do(
    spawn_cli, tmp_path: Path, migration_engine: Engine
) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with migrate.migration_lock(migration_engine) as connection:
        with out.open("w") as stdout, err.open("w") as stderr:
            waiting = spawn_cli("db", "migrate", stdout=stdout, stderr=stderr)
        try:
            _wait_for_text(err, "another edgefleet migration is running")
            assert waiting.poll() is None  # blocked on our lock, not finished
            result = migrate.upgrade_locked(connection)
            assert result.after == migrate.head_revision()
        except BaseException:
            waiting.kill()
            raise
    assert waiting.wait(timeout=60) == 0, err.read_text()
    assert f"already at revision {migrate.head_revision()}" in out.read_text()
