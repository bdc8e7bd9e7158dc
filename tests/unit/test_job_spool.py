"""The worker's spool: messages survive a restart, in order; logs are capped, results never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.worker.spool import (
    Kind,
    Leftover,
    Run,
    Spool,
    SpoolError,
    process_start,
    spool_dir,
)

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def test_messages_are_kept_in_order_across_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    first = spool.put(Kind.LOG, 7, 1, {"attempt": 1, "seq": 0, "data": "hello"})
    second = spool.put(Kind.RESULT, 7, 1, {"attempt": 1, "state": "success"})
    other = spool.put(Kind.RELEASE, 8, 2, {"attempt": 2})
    assert first and second and other
    assert [first.key, second.key, other.key] == [1, 2, 3]
    assert len(spool) == 3

    again = Spool(tmp_path, "w1")
    loaded = again.load()
    assert [(e.kind, e.job_id, e.attempt) for e in loaded] == [
        (Kind.LOG, 7, 1),
        (Kind.RESULT, 7, 1),
        (Kind.RELEASE, 8, 2),
    ]
    assert loaded[1].body == {"attempt": 1, "state": "success"}
    assert loaded[0].lane == loaded[1].lane == Run(job_id=7, attempt=1)
    # new messages continue the order after what was left
    assert again.put(Kind.LOG, 9, 1, {"x": 1}).key == 4


def test_file_names_keep_the_format_older_workers_wrote_and_read(tmp_path: Path) -> None:
    """The spool outlives a worker upgrade: a name is ``<key>-<kind>-<job>-<attempt>``
    with the kind spelled as it always was, and such names are read back as typed kinds."""
    spool = Spool(tmp_path, "w1")
    for kind in (Kind.RESULT, Kind.LOG, Kind.RELEASE):
        spool.put(kind, 7, 2, {})
    names = sorted(path.name for path in spool.outbox.iterdir())
    assert names == [
        "000000000001-result-7-2.json",
        "000000000002-log-7-2.json",
        "000000000003-release-7-2.json",
    ]
    (spool.outbox / "000000000009-log-8-1.json").write_text('{"seq": 0}')
    loaded = Spool(tmp_path, "w1").load()
    assert [(e.key, e.kind, e.lane) for e in loaded][-1] == (9, Kind.LOG, Run(8, 1))
    assert all(type(e.kind) is Kind for e in loaded)


def test_unknown_kinds_are_refused_on_write_and_skipped_on_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    with pytest.raises(ValueError, match="unknown spool message kind 'cancel'"):
        spool.put("cancel", 1, 1, {})  # type: ignore[arg-type]
    (spool.outbox / "000000000001-cancel-1-1.json").write_text("{}")
    assert spool.load() == []
    assert len(list(spool.outbox.iterdir())) == 1


def test_removed_messages_are_gone_for_good(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    entry = spool.put(Kind.RESULT, 1, 1, {"a": 1})
    spool.remove(entry)
    spool.remove(entry)  # twice is harmless
    assert len(spool) == 0
    assert Spool(tmp_path, "w1").load() == []


def test_each_worker_name_has_its_own_spool(tmp_path: Path) -> None:
    Spool(tmp_path, "a").put(Kind.RESULT, 1, 1, {})
    assert Spool(tmp_path, "b").load() == []
    assert spool_dir(tmp_path, "a") == tmp_path / "spool" / "a"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_unusable_worker_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpoolError):
        Spool(tmp_path, name)


def test_log_chunks_are_refused_past_the_cap_but_results_never(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1", max_log_bytes=100)
    assert spool.put(Kind.LOG, 1, 1, {"data": "x" * 40}) is not None
    assert spool.put(Kind.LOG, 1, 1, {"data": "x" * 80}) is None
    assert spool.put(Kind.RESULT, 1, 1, {"data": "y" * 500}) is not None
    logs = [e for e in spool.load() if e.kind is Kind.LOG]
    assert len(logs) == 1
    spool.remove(logs[0])
    assert spool.log_bytes == 0
    assert spool.put(Kind.LOG, 1, 1, {"data": "x" * 80}) is not None


def test_unreadable_and_stray_files_are_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    good = spool.put(Kind.RESULT, 1, 1, {"ok": True})
    (spool.outbox / "000000000005-result-2-1.json").write_text("{not json")
    (spool.outbox / ".000000000006-result-3-1.json.123.tmp").write_text("{}")
    (spool.outbox / "notes.txt").write_text("hello")
    loaded = Spool(tmp_path, "w1").load()
    assert [e.key for e in loaded] == [good.key]
    assert (spool.outbox / "000000000005-result-2-1.corrupt").exists()


def test_running_markers_name_the_process_and_are_read_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        spool.mark_running(Run(3, 2), proc.pid)
        spool.mark_running(Run(4, 1), proc.pid)
        spool.clear_running(Run(4, 1))
        (left,) = Spool(tmp_path, "w1").leftovers()
        assert (left.job_id, left.attempt, left.pid) == (3, 2, proc.pid)
        assert left.start == process_start(proc.pid) is not None
        assert spool.leftovers() == []
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"job": 3, "attempt": 2, "pid": 40, "start": None}, Leftover(3, 2, 40, None)),
        ({"job": 3, "pid": "40", "start": True}, Leftover(3, None, None, None)),
        ([3, 2, 40], Leftover(None, None, None, None)),
    ],
)
def test_running_markers_are_read_as_far_as_they_make_sense(
    tmp_path: Path, record: object, expected: Leftover
) -> None:
    spool = Spool(tmp_path, "w1")
    (spool.running_dir / "3-2.json").write_text(json.dumps(record))
    assert spool.leftovers() == [expected]


def test_process_start_of_a_missing_process_is_none() -> None:
    assert process_start(2**22 + 12345) is None
    assert process_start(os.getpid()) is not None
