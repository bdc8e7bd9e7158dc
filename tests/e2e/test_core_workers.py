"""End-to-end: several workers on one machine, and one worker name per live process."""

from __future__ import annotations

import pytest

from edgefleet.worker.statefile import read_state
from support import free_port, squash, wait_until


def test_two_workers_share_one_home_side_by_side(
    server, admin_api, start_worker, job_recorder, edgefleet_home
):
    a = start_worker("site-a", concurrency=1, queues="qa")
    b = start_worker("site-b", concurrency=2, queues="qb")
    assert a.pid != b.pid

    jobs = {
        admin_api.submit(job_recorder.command(0.2), queue="qa"): "site-a",
        admin_api.submit(job_recorder.command(0.2), queue="qb"): "site-b",
        admin_api.submit(job_recorder.command(0.2), queue="qa"): "site-a",
    }
    views = admin_api.wait_for_jobs(list(jobs))
    for job_id, host in jobs.items():
        assert (views[job_id]["state"], views[job_id]["worker"]) == ("success", host)
    parents = {run.job: run.ppid for run in job_recorder.runs()}
    assert parents == {
        job_id: (a.pid if host == "site-a" else b.pid) for job_id, host in jobs.items()
    }

    workers = {w["hostname"]: w for w in admin_api.workers()}
    assert set(workers) == {"site-a", "site-b"}
    assert (workers["site-a"]["pid"], workers["site-a"]["queues"]) == (a.pid, ["qa"])
    assert (workers["site-b"]["pid"], workers["site-b"]["queues"]) == (b.pid, ["qb"])
    assert workers["site-a"]["state"] in ("idle", "running")
    assert workers["site-b"]["state"] in ("idle", "running")

    # Each keeps its own local state file in the shared home.
    assert read_state(edgefleet_home, "site-a")["pid"] == a.pid
    assert read_state(edgefleet_home, "site-b")["pid"] == b.pid
    assert a.alive() and b.alive()


def _refused(worker) -> str:
    code = worker.wait(timeout=60)
    assert code != 0, worker.log_text()
    return squash(worker.log_text())


def test_second_live_process_with_the_same_name_is_refused(
    server, admin_api, start_worker, edgefleet_env, tmp_path
):
    first = start_worker("edge-dup", concurrency=1)
    before = admin_api.worker("edge-dup")

    # Same machine (same EDGEFLEET_HOME): refused locally, before it contacts the server.
    local = start_worker("edge-dup", concurrency=3, wait=False)
    message = _refused(local)
    assert "edge-dup" in message and "already running" in message, message
    assert str(first.pid) in message

    # Another machine (another home) under the same name: the server refuses it.
    elsewhere = dict(edgefleet_env, EDGEFLEET_HOME=str(tmp_path / "other-home"))
    remote = start_worker("edge-dup", concurrency=3, env=elsewhere, wait=False)
    message = _refused(remote)
    assert "edge-dup" in message and "already online" in message, message

    # The live worker kept its registration and its settings.
    after = admin_api.worker("edge-dup")
    for field in ("pid", "instance_id", "started_at", "flag_concurrency", "desired_version"):
        assert after[field] == before[field], field
    assert first.alive()


@pytest.mark.same_on_every_backend  # the worker's own flag checks
def test_worker_flags_out_of_bounds_are_refused(server, admin_api, start_worker):
    values = ("0", "-2", "1025", "many")
    workers = [start_worker("edge-flags", concurrency=value, wait=False) for value in values]
    for worker in workers:
        message = _refused(worker).lower()
        assert "concurrency" in message, message
    assert admin_api.find_worker("edge-flags") is None


@pytest.mark.same_on_every_backend  # the worker's own stop
def test_a_worker_that_cannot_reach_the_server_still_stops_on_sigterm(start_worker, edgefleet_env):
    unreachable = dict(edgefleet_env, EDGEFLEET_API_URL=f"http://127.0.0.1:{free_port()}")
    worker = start_worker("edge-lonely", concurrency=1, env=unreachable, wait=False)
    wait_until(lambda: "cannot register" in worker.log_text(), timeout=30, message=worker.log_tail)
    assert worker.stop(timeout=20) == 0
    assert worker.log_text().count("cannot register") >= 1
