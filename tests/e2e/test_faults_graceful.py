"""A worker stopped gracefully (SIGTERM): it fetches no more, lets its running jobs finish
within ``--grace-period``, reports them and exits 0. Jobs still running when the grace period
runs out, or when a second SIGTERM comes, are killed (their whole process group) and
reported failed with reason "killed"; a job with retries left is then queued again."""

from __future__ import annotations

import shlex
import signal

import pytest
from jobs_support import jobs_fixture  # noqa: F401 - fixture

from support import wait_until

pytestmark = pytest.mark.same_on_every_backend


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_lets_running_jobs_finish_and_exits_zero(
    server, start_worker, jobs, job_recorder, admin_api
):
    worker = start_worker("draining-edge", concurrency=2)
    running = [jobs.submit(job_recorder.command(2.0)) for _ in range(2)]
    wait_until(lambda: len(job_recorder.running()) == 2, message="2 jobs running")
    waiting = jobs.submit(job_recorder.command(0.0))

    assert worker.stop(timeout=60) == 0
    views = jobs.wait_finished(running, timeout=30)
    assert {v["state"] for v in views.values()} == {"success"}
    assert len(job_recorder.finished()) == 2  # both ran to their end
    assert jobs.get(waiting)["state"] == "queued"  # nothing new was fetched
    assert admin_api.worker("draining-edge")["state"] == "stopped"


def test_jobs_outliving_the_grace_period_are_killed_and_retried(
    server, start_worker, jobs, job_recorder
):
    worker = start_worker("hasty-edge", concurrency=2, extra_args=("--grace-period", "1"))
    first = shlex.join(job_recorder.command(120.0))
    later = shlex.join(job_recorder.command(0.2))
    by_attempt = f'if [ "$EDGEFLEET_JOB_ATTEMPT" = 1 ]; then {first}; else {later}; fi'
    retried = jobs.submit(["sh", "-c", by_attempt], retries=1, retry_delay=0)
    doomed = jobs.submit(job_recorder.command(120.0))
    wait_until(lambda: len(job_recorder.running()) == 2, message="2 jobs running")
    pids = [run.pid for run in job_recorder.running()]

    assert worker.stop(timeout=60) == 0
    for pid in pids:
        assert not _alive(pid)
    failed = jobs.get(doomed)
    assert failed["state"] == "failed"
    assert failed["reason"].startswith("killed: the worker was stopped")
    assert "grace period of 1s" in failed["reason"]
    requeued = jobs.get(retried)
    assert (requeued["state"], requeued["attempt"]) == ("queued", 1)
    assert "retrying" in requeued["reason"]

    start_worker("patient-edge", concurrency=1)
    view = jobs.wait_state(retried, "success", timeout=60)
    assert (view["attempt"], view["worker"]) == (2, "patient-edge")


def test_a_second_sigterm_kills_the_jobs_at_once(server, start_worker, jobs, job_recorder):
    worker = start_worker("impatient-edge", concurrency=1)
    job = jobs.submit(job_recorder.command(120.0))
    (run,) = wait_until(job_recorder.running, message="job running")
    worker.send(signal.SIGTERM)
    wait_until(lambda: "stopping" in worker.log_text(), message="first stop seen")
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert not _alive(run.pid)
    view = jobs.get(job)
    assert (view["state"], view["reason"]) == ("failed", "killed: the worker was stopped")
    assert view["exit_code"] is not None
