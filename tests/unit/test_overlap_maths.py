"""The overlap maths the end-to-end tests rely on (support.records): if it were wrong, a
broken concurrency limit could pass unnoticed."""

from __future__ import annotations

import json

import pytest

from support import JobRecorder, JobRun, max_overlap, parse_time, running_at

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def run(job: int, start: float, end: float | None) -> JobRun:
    return JobRun(job=job, attempt=1, worker="w", pid=1000 + job, ppid=1, start=start, end=end)


def test_no_runs_no_overlap():
    assert max_overlap([]) == 0
    assert running_at([], 5.0) == []


def test_back_to_back_runs_do_not_overlap():
    runs = [run(1, 0.0, 1.0), run(2, 1.0, 2.0), run(3, 2.0, 3.0)]
    assert max_overlap(runs) == 1
    assert running_at(runs, 1.0) == [runs[1]]


def test_nested_and_staggered_runs():
    runs = [run(1, 0.0, 10.0), run(2, 1.0, 2.0), run(3, 1.5, 3.0), run(4, 2.5, 4.0)]
    assert max_overlap(runs) == 3  # at 1.5: runs 1, 2, 3
    assert [r.job for r in running_at(runs, 2.7)] == [1, 3, 4]


def test_window_counts_runs_already_going_at_its_start():
    runs = [run(1, 0.0, 10.0), run(2, 1.0, 10.0), run(3, 5.0, 6.0)]
    assert max_overlap(runs, start=4.0, end=4.5) == 2  # no run starts inside, two are going
    assert max_overlap(runs, start=4.0) == 3
    assert max_overlap(runs, end=4.0) == 2
    assert max_overlap(runs, start=6.0) == 2  # run 3 ended at 6.0


def test_open_runs_count_as_running():
    runs = [run(1, 0.0, None), run(2, 3.0, 4.0)]
    assert max_overlap(runs) == 2
    assert running_at(runs, 100.0) == [runs[0]]


def test_recorder_pairs_start_and_end_by_process(tmp_path):
    recorder = JobRecorder(tmp_path / "r.jsonl")
    events = [
        {"event": "start", "t": 1.0, "job": 7, "attempt": 1, "worker": "w", "pid": 11, "ppid": 9},
        {"event": "start", "t": 2.0, "job": 8, "attempt": 1, "worker": "w", "pid": 12, "ppid": 9},
        {"event": "end", "t": 3.0, "job": 7, "attempt": 1, "worker": "w", "pid": 11, "ppid": 9},
    ]
    text = "".join(json.dumps(e) + "\n" for e in events) + '{"event": "st'  # a line mid-write
    recorder.path.write_text(text)
    runs = recorder.runs()
    assert [(r.job, r.start, r.end) for r in runs] == [(7, 1.0, 3.0), (8, 2.0, None)]
    assert [r.job for r in recorder.running()] == [8]
    assert [r.job for r in recorder.finished()] == [7]


def test_parse_time_matches_posix_seconds():
    assert parse_time("1970-01-01T00:00:10Z") == 10.0
    assert parse_time("1970-01-01T01:00:10+01:00") == 10.0
