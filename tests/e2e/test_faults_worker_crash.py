"""Fault: a worker killed with SIGKILL in the middle of its jobs.

Once the worker missed a few of its own heartbeats (at most the offline timeout, 10 s in
tests) the server's sweeper counts its runs as lost: each job with retries left runs again
elsewhere, the others fail with the reason.
A worker restarted before that hands its predecessor's runs back at once. Nothing stays
``running`` for ever, and the killed jobs' processes die with their worker.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from jobs_support import Jobs, jobs_fixture, spool_files  # noqa: F401 - fixtures

from support import AdminApi, parse_time, wait_until

LONG_FIRST_ATTEMPT = 'if [ "$EDGEFLEET_JOB_ATTEMPT" = 1 ]; then exec sleep 600; fi'


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_killed_workers_jobs_run_again_elsewhere(server, start_worker, jobs, job_recorder):
    crashing = start_worker("crash-edge", concurrency=3)
    ids = [jobs.submit(job_recorder.command(3.0), retries=2) for _ in range(3)]
    wait_until(lambda: len(job_recorder.running()) == 3, message="3 jobs running")
    running = job_recorder.running()
    assert {r.worker for r in running} == {"crash-edge"}

    last_heartbeat = parse_time(jobs.api.worker("crash-edge")["last_heartbeat"])
    killed_at = time.time()
    crashing.send(signal.SIGKILL)  # no clean-up in the worker at all
    crashing.wait(10)
    # Its jobs die with it (they would otherwise run on while the server re-queues them).
    for run in running:
        wait_until(lambda run=run: _pid_gone(run.pid), timeout=10, message=f"job pid {run.pid}")

    start_worker("rescue-edge", concurrency=3)
    views = jobs.wait_finished(ids, timeout=90)
    lost_at = []
    for job_id, view in views.items():
        assert (view["state"], view["attempt"], view["worker"]) == ("success", 2, "rescue-edge")
        history = jobs.get(job_id)["history"]
        events = [e["event"] for e in history]
        assert events == ["submitted", "started", "lost", "started", "succeeded"], events
        lost = history[2]
        assert "worker crash-edge went offline" in lost["reason"]
        assert (lost["attempt"], lost["worker"], lost["state"]) == (1, "crash-edge", "queued")
        lost_at.append(parse_time(lost["at"]))
    # Re-queued once the worker had been silent for the offline timeout (10 s), not before
    # (the server stamps to the millisecond).
    assert min(lost_at) >= last_heartbeat + 10.0 - 0.01
    print(
        f"\nre-queued {min(lost_at) - killed_at:.2f}-{max(lost_at) - killed_at:.2f}s after kill -9"
    )

    finished = [r for r in job_recorder.runs() if r.end is not None]
    assert sorted(r.job for r in finished) == sorted(ids)  # the killed runs never finished
    assert {(r.worker, r.attempt) for r in finished} == {("rescue-edge", 2)}


def test_without_retries_the_lost_job_fails_with_the_reason(
    server, start_worker, jobs, job_recorder
):
    worker = start_worker("lonely-edge", concurrency=1)
    job = jobs.submit(job_recorder.command(30.0))
    wait_until(job_recorder.running, message="job running")
    worker.kill()
    view = jobs.wait_state(job, "failed", timeout=60)
    assert view["exit_code"] is None
    assert "worker lonely-edge went offline" in view["reason"]
    assert "attempt 1" in view["reason"]
    assert jobs.events(job) == ["submitted", "started", "lost"]


def test_a_worker_restarted_at_once_hands_back_its_predecessors_jobs(
    patient_liveness, server, start_worker, jobs, job_recorder, edgefleet_home
):
    first = start_worker("phoenix-edge", concurrency=2)
    running = [jobs.submit(job_recorder.command(3.0), retries=1) for _ in range(2)]
    waiting = jobs.submit(job_recorder.command(0.0))
    wait_until(lambda: len(job_recorder.running()) == 2, message="2 jobs running")
    first.send(signal.SIGKILL)
    first.wait(10)

    second = start_worker("phoenix-edge", concurrency=3)  # well within the offline timeout
    for job_id in running:  # lost at registration, not after the offline timeout
        lost = jobs.get(job_id)["history"][2]
        assert lost["event"] == "lost", jobs.events(job_id)
        assert "the worker restarted while the job was running" in lost["reason"]
    views = jobs.wait_finished([*running, waiting], timeout=90)
    assert [views[j]["attempt"] for j in running] == [2, 2]
    assert views[waiting]["attempt"] == 1
    assert {v["state"] for v in views.values()} == {"success"}
    finished = [r for r in job_recorder.runs() if r.end is not None]
    assert sorted(r.job for r in finished) == sorted([*running, waiting])
    assert {r.ppid for r in finished} == {second.pid}
    # The server has each result before the worker deletes its spooled copy.
    wait_until(
        lambda: spool_files(edgefleet_home, "phoenix-edge") == [],
        message="the worker's spool emptied",
    )


@pytest.mark.same_on_every_backend  # the rule; test_liveness: its query
def test_a_killed_worker_is_given_up_after_a_few_of_its_own_heartbeats(
    edgefleet_env, server_factory, start_worker
):
    """Beating every 2 s, a worker is offline after 10 s of silence, far sooner than the
    default offline timeout of 150 s, which stays the bound for slow beaters only."""
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "150"
    edgefleet_env["EDGEFLEET_SWEEP_INTERVAL"] = "1"  # the sweep's own delay out of the way
    server = server_factory()
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"]) as api:
        jobs = Jobs(api)
        victim = start_worker("quick-edge", concurrency=1, heartbeat_interval=2)
        job = jobs.submit(["sh", "-c", LONG_FIRST_ATTEMPT], retries=1, retry_delay=0)
        jobs.wait_state(job, "running")
        victim.kill()
        start_worker("steady-edge", concurrency=1, heartbeat_interval=2)
        # Far below 150 s: a fixed global timeout would leave the job running here.
        view = jobs.wait_state(job, "success", "failed", timeout=40)
        assert (view["state"], view["attempt"], view["worker"]) == ("success", 2, "steady-edge")
        history = jobs.get(job)["history"]
        assert [e["event"] for e in history] == [
            "submitted",
            "started",
            "lost",
            "started",
            "succeeded",
        ]
        assert "worker quick-edge went offline (no heartbeat for" in history[2]["reason"]
        assert "beating every 2s" in history[2]["reason"]
