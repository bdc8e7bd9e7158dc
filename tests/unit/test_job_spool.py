"""The worker's spool: messages survive a restart, in order; logs are capped, results never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.worker.spool import Spool, SpoolError, process_start, spool_dir


def test_messages_are_kept_in_order_across_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    first = spool.put("log", 7, 1, {"attempt": 1, "seq": 0, "data": "hello"})
    second = spool.put("result", 7, 1, {"attempt": 1, "state": "success"})
    other = spool.put("release", 8, 2, {"attempt": 2})
    assert first and second and other
    assert [first.key, second.key, other.key] == [1, 2, 3]
    assert len(spool) == 3

    again = Spool(tmp_path, "w1")
    loaded = again.load()
    assert [(e.kind, e.job_id, e.attempt) for e in loaded] == [
        ("log", 7, 1),
        ("result", 7, 1),
        ("release", 8, 2),
    ]
    assert loaded[1].body == {"attempt": 1, "state": "success"}
    assert loaded[0].lane == loaded[1].lane == (7, 1)
    # new messages continue the order after what was left
    assert again.put("log", 9, 1, {"x": 1}).key == 4


def test_removed_messages_are_gone_for_good(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    entry = spool.put("result", 1, 1, {"a": 1})
    spool.remove(entry)
    spool.remove(entry)  # twice is harmless
    assert len(spool) == 0
    assert Spool(tmp_path, "w1").load() == []


def test_each_worker_name_has_its_own_spool(tmp_path: Path) -> None:
    Spool(tmp_path, "a").put("result", 1, 1, {})
    assert Spool(tmp_path, "b").load() == []
    assert spool_dir(tmp_path, "a") == tmp_path / "spool" / "a"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_unusable_worker_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpoolError):
        Spool(tmp_path, name)


def test_log_chunks_are_refused_past_the_cap_but_results_never(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1", max_log_bytes=100)
    assert spool.put("log", 1, 1, {"data": "x" * 40}) is not None
    assert spool.put("log", 1, 1, {"data": "x" * 80}) is None
    assert spool.put("result", 1, 1, {"data": "y" * 500}) is not None
    logs = [e for e in spool.load() if e.kind == "log"]
    assert len(logs) == 1
    spool.remove(logs[0])
    assert spool.log_bytes == 0
    assert spool.put("log", 1, 1, {"data": "x" * 80}) is not None


def test_unreadable_and_stray_files_are_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    good = spool.put("result", 1, 1, {"ok": True})
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
        spool.mark_running(3, 2, proc.pid)
        spool.mark_running(4, 1, proc.pid)
        spool.clear_running(4, 1)
        (record,) = Spool(tmp_path, "w1").leftovers()
        assert (record["job"], record["attempt"], record["pid"]) == (3, 2, proc.pid)
        assert record["start"] == process_start(proc.pid) is not None
        assert spool.leftovers() == []
    finally:
        proc.kill()
        proc.wait()


def test_process_start_of_a_missing_process_is_none() -> None:
    assert process_start(2**22 + 12345) is None
    assert process_start(os.getpid()) is not None
