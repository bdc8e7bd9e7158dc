"""The soak's accounting (support/soak_accounting.py): if it were wrong, the soak could report
"0 run twice" over a job that ran twice."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support import wait_until
from support.soak_accounting import (
    JOB_SOURCE,
    Execution,
    Outcome,
    Stop,
    read_executions,
    run_twice,
    unclaimed_with_free_slot,
)

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def execute(marks: Path, job: int, attempt: int, seconds: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "EDGEFLEET_JOB_ID": str(job),
        "EDGEFLEET_JOB_ATTEMPT": str(attempt),
        "EDGEFLEET_WORKER": "w1",
    }
    command = [sys.executable, "-I", "-S", "-c", JOB_SOURCE, str(marks), str(seconds)]
    return subprocess.Popen(command, env=env)


def test_an_execution_knows_whether_another_one_of_its_job_is_alive(tmp_path: Path):
    first = execute(tmp_path, 7, 1, 60)
    try:
        wait_until(lambda: read_executions(tmp_path), message="the first execution's mark")
        assert execute(tmp_path, 7, 2, 0).wait(30) == 0  # alongside the first: not alone
        assert execute(tmp_path, 8, 1, 0).wait(30) == 0  # another job: alone
    finally:
        first.kill()
        first.wait()
    assert execute(tmp_path, 7, 3, 0).wait(30) == 0  # the first is dead: alone again
    runs = read_executions(tmp_path)
    assert [(r.job, r.attempt, r.alone, r.end is not None) for r in runs] == [
        (7, 1, True, False),
        (7, 2, False, True),
        (8, 1, True, True),
        (7, 3, True, True),
    ]


def run(attempt: int, start: float, end: float | None, alone: bool = True) -> Execution:
    return Execution(job=1, attempt=attempt, worker="w1", start=start, alone=alone, end=end)


def succeeded(attempt: int) -> dict:
    return {"event": "succeeded", "attempt": attempt}


def test_a_retry_after_a_run_that_died_is_not_running_twice():
    runs = [run(1, 0.0, None), run(2, 5.0, 6.0)]
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(3.0, 3.0)]}) == ([], 0)


def test_two_executions_alive_at_once_are_running_twice():
    runs = [run(1, 0.0, None), run(2, 5.0, 6.0, alone=False)]
    assert run_twice(runs, [succeeded(2)], {}) == (["two executions alive at once"], 0)


def test_one_attempt_executed_twice_is_running_twice():
    runs = [run(1, 0.0, None), run(1, 5.0, 6.0)]
    assert run_twice(runs, [succeeded(1)], {}) == (["one attempt executed twice"], 0)


def test_running_again_after_a_recorded_end_is_running_twice():
    runs = [run(1, 0.0, 1.0), run(2, 5.0, 6.0)]
    bad = ["ran again after attempt 1 ran to its end"]
    assert run_twice(runs, [succeeded(1), succeeded(2)], {"w1": [Stop(1.2, 1.2)]}) == (bad, 0)
    # not recorded, and its worker lived on until the re-run: it should have reported it
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(0.5, 0.5), Stop(5.5, 5.5)]}) == (bad, 0)


def test_a_job_run_twice_comes_with_its_history_on_one_clock():
    view = {
        "state": "success",
        "attempt": 2,
        "worker": "w1",
        "queue": "default",
        "history": [
            {"at": at(0.5), "event": "started", "state": "running", "attempt": 1, "worker": "w1"},
            {"at": at(4.0), "event": "lost", "state": "queued", "attempt": 1, "worker": "w1"},
        ],
    }
    outcome = Outcome()
    outcome.judge(1, view, [run(1, 0.0, 1.0), run(2, 5.0, 6.0)], {"w1": [Stop(5.5, 5.5)]}, [])
    assert outcome.twice == {1: ["ran again after attempt 1 ran to its end"]}
    assert [line.split()[1:3] for line in outcome.evidence[1].splitlines()] == [
        ["run", "start"],
        ["server", "started"],
        ["run", "end"],
        ["server", "lost"],
        ["run", "start"],
        ["stop", "w1"],
        ["run", "end"],
    ]


def test_an_end_lost_with_its_worker_is_the_at_least_once_window():
    runs = [run(1, 0.0, 1.0), run(2, 5.0, 6.0)]
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(1.3, 1.3)]}) == ([], 1)
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(4.5, 4.5)]}) == ([], 1)  # a slow worker
    # SIGTERM: the grace ran out (harness clock) just before the end; the worker, a little
    # later on its own clock, killed the job as its interpreter shut down
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(0.9, 3.0)]}) == ([], 1)
    # SIGKILL just before the end: the job outlived its worker while that worker died (the
    # harness saw it gone at its restart)
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(0.98, 3.0)]}) == ([], 1)
    assert run_twice(runs, [succeeded(2)], {"w1": [Stop(0.2, 0.8)]})[0]  # gone before the end


def at(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_unclaimed_with_a_free_slot_is_the_longest_free_stretch_while_queued():
    t0 = 1_000_000.0
    view = {
        "queue": "default",
        "history": [
            {"at": at(t0), "event": "submitted", "state": "queued"},
            {"at": at(t0 + 10), "event": "started", "state": "running"},
            {"at": at(t0 + 20), "event": "lost", "state": "queued"},
            {"at": at(t0 + 22.5), "event": "started", "state": "running"},
            {"at": at(t0 + 23), "event": "succeeded", "state": "success"},
        ],
    }
    free = {3, 4, 5, 6, 8, 9, 21, 22, 30}  # seconds after t0 with a free slot for it
    samples = [(t0 + s, {"default"} if s in free else {"other"}) for s in range(40)]
    # 3..6 (3 s), 8 up to the start at 10 (2 s), 21 up to the start at 22.5 (1.5 s)
    assert unclaimed_with_free_slot(view, samples) == 3.0
    assert unclaimed_with_free_slot({**view, "queue": "long"}, samples) == 0.0


def test_a_job_is_lost_unless_it_ended_and_its_recorded_attempt_really_ran():
    outcome = Outcome()
    done = {"state": "success", "attempt": 2, "worker": "w1", "history": [], "queue": "q"}
    outcome.judge(1, done, [run(1, 0.0, None), run(2, 5.0, 6.0)], {}, [])
    outcome.judge(2, done, [run(2, 5.0, None)], {}, [])  # attempt 2 never ran to its end
    outcome.judge(3, {**done, "state": "running"}, [run(2, 5.0, None)], {}, [])
    outcome.judge(4, None, [], {}, [])
    failed = {**done, "state": "failed", "reason": "worker soak-1-2 went offline 31.5 s ago"}
    outcome.judge(5, failed, [run(2, 5.0, None)], {}, [])
    assert sorted(outcome.lost) == [2, 3, 4]
    assert outcome.failed == {"worker W went offline N s ago": 1}
    assert outcome.twice == {}
