"""Concurrent fetches: many workers racing for many short jobs never share one.

Ten workers of eight slots start at once against 240 queued jobs (three rounds of claims).
Each job appends its id, attempt and worker to one file (a single O_APPEND write); every id
must appear exactly once, and every job must end ``success`` at attempt 1 on the worker that
ran it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from jobs_support import jobs_fixture  # noqa: F401 - fixture

from support import wait_until

WORKERS = 10
JOBS = 240


@pytest.fixture
def patient_server(edgefleet_env: dict[str, str]) -> None:
    """This test is about claims, not liveness: on a loaded 2-core machine the server may
    take a while to answer heartbeats, so do not let it count workers as offline soon."""
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "60"


def test_ten_workers_racing_for_240_jobs_run_each_exactly_once(
    patient_server, server, start_worker, jobs, admin_api, tmp_path
):
    ledger = tmp_path / "ledger.txt"
    line = f'echo "$EDGEFLEET_JOB_ID $EDGEFLEET_JOB_ATTEMPT $EDGEFLEET_WORKER" >> {ledger}'
    ids = [jobs.submit(["sh", "-c", line]) for _ in range(JOBS)]

    fleet = [
        start_worker(
            f"racer-{n:02d}", concurrency=8, wait=False, extra_args=("--poll-interval", "1")
        )
        for n in range(WORKERS)
    ]
    views = jobs.wait_finished(ids, timeout=600)
    assert all("lost" not in jobs.events(job_id) for job_id in ids[:20])

    entries = [row.split() for row in ledger.read_text().splitlines()]
    runs = Counter(int(job) for job, _, _ in entries)
    assert sorted(runs) == sorted(ids), "a job never ran"
    assert [job for job, n in runs.items() if n > 1] == [], "a job ran twice"
    ran_on = {int(job): (int(attempt), worker) for job, attempt, worker in entries}
    for job_id, view in views.items():
        assert view["state"] == "success", view
        assert (view["attempt"], view["worker"]) == ran_on[job_id]
    workers_used = {worker for _, worker in ran_on.values()}
    assert len(workers_used) > 1  # it really was a race
    assert all(worker.alive() for worker in fleet)
    wait_until(
        lambda: all(w["jobs_running"] == 0 for w in admin_api.workers()),
        message="no job left running",
    )
