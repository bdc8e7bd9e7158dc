"""A worker given both replicas (``--api-url A,B``) goes on through B when A is killed.

Real processes: two ``edgefleet server`` on one PostgreSQL database and one worker that knows
both. A dies with SIGKILL while the worker runs a job; the worker keeps the job, reports it
through B (once: attempt 1, one ``started`` and one ``succeeded``), and takes new work and a
control change there. A worker unheard of for ``EDGEFLEET_WORKER_OFFLINE_TIMEOUT`` (10 s in the
tests) would have its job re-queued: a failover slower than that shows as a second attempt.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import (
    PG_URL_ENV,
    AdminApi,
    JobRecorder,
    ServerProcess,
    WorkerProcess,
    free_port,
    parse_time,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_URL_ENV),
    reason=f"replicas share a PostgreSQL database; set {PG_URL_ENV} to run",
)

#: A job that notes its start (attempt, worker pid) and end, and runs until ``release`` exists.
HELD_JOB = """\
import os, sys, time
marks, release = sys.argv[1], sys.argv[2]
def mark(line):
    with open(marks, "a") as f:
        f.write(line + "\\n")
mark(f"start {os.environ['EDGEFLEET_JOB_ATTEMPT']} {os.getppid()}")
while not os.path.exists(release):
    time.sleep(0.02)
mark("end")
"""


def test_a_worker_goes_on_through_the_other_replica_when_its_own_is_killed(
    edgefleet_env: dict[str, str],
    server_factory: Callable[..., ServerProcess],
    start_worker: Callable[..., WorkerProcess],
    job_recorder: JobRecorder,
    tmp_path: Path,
):
    # Both replicas start side by side (starting is most of this test's time).
    server_a = server_factory(wait=False)
    env_b = {**edgefleet_env, "EDGEFLEET_API_URL": f"http://127.0.0.1:{free_port()}"}
    server_b = server_factory(migrate=False, env=env_b, wait=False)
    server_a.wait_healthy()
    server_b.wait_healthy()
    worker = start_worker(
        "fo-1", concurrency=1, extra_args=("--api-url", f"{server_a.url},{server_b.url}")
    )
    with AdminApi(server_b.url, edgefleet_env["EDGEFLEET_SECRET"]) as b:
        marks, release = tmp_path / "marks", tmp_path / "release"
        held = [sys.executable, "-I", "-c", HELD_JOB, str(marks), str(release)]
        job = b.submit(held)
        wait_until(lambda: marks.exists(), message=f"job {job} to start")

        server_a.kill()
        killed_at = time.time()
        # The worker tells B at once that it lives and runs the job.
        b.wait_for_worker(
            "fo-1",
            lambda v: v["last_heartbeat"] and parse_time(v["last_heartbeat"]) > killed_at,
            message="a heartbeat through replica b",
        )
        assert b.job(job)["state"] == "running"

        release.touch()
        b.wait_for_jobs([job])
        view = b.job(job)
        assert (view["state"], view["attempt"], view["worker"]) == ("success", 1, "fo-1")
        events = [event["event"] for event in view["history"]]
        assert events.count("started") == 1 and events.count("succeeded") == 1, events
        assert "lost" not in events, events
        assert marks.read_text().splitlines() == [f"start 1 {worker.pid}", "end"]

        # New work and control changes now come through B.
        assert b.set_concurrency("fo-1", 2).status_code == 200
        b.wait_applied("fo-1", 2)
        ids = [b.submit(job_recorder.command(0.0)) for _ in range(2)]
        views = b.wait_for_jobs(ids)
        assert all(v["state"] == "success" and v["worker"] == "fo-1" for v in views.values())

    assert worker.alive()
    assert f"moving to {server_b.url}" in worker.log_text()
