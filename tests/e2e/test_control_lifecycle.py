"""Maintenance (drain), shutdown, removal, local worker commands and long-poll delivery."""

from __future__ import annotations

import pytest

from support import AdminApi, squash, wait_until

pytestmark = pytest.mark.same_on_every_backend


def test_maintenance_drains_without_killing_and_resumes(
    server, start_worker, cli, cli_json, admin_api, job_recorder
):
    worker = start_worker("drain-1", concurrency=2)
    # Long enough to outlast a CLI call on a loaded machine: they must still run when the
    # maintenance request lands.
    running = [admin_api.submit(job_recorder.command(seconds=8)) for _ in range(2)]
    wait_until(lambda: len(job_recorder.running()) == 2, message="two jobs running")

    cli(
        "remote-edge-worker-request-maintenance",
        "-H",
        "drain-1",
        "-c",
        "firmware",
        "--wait",
        check=True,
    )
    view = admin_api.worker("drain-1")
    assert view["state"] == "maintenance_pending"
    assert view["maintenance_comment"] == "firmware"

    waiting = admin_api.submit(job_recorder.command(seconds=0))
    finished = admin_api.wait_for_jobs(running)
    assert {job["state"] for job in finished.values()} == {"success"}
    admin_api.wait_for_worker("drain-1", lambda v: v["state"] == "maintenance")
    assert admin_api.job(waiting)["state"] == "queued"

    cli("remote-edge-worker-update-maintenance-comment", "-H", "drain-1", "-c", "fw v2", check=True)
    assert admin_api.worker("drain-1")["maintenance_comment"] == "fw v2"

    cli("remote-edge-worker-exit-maintenance", "-H", "drain-1", "--wait", check=True)
    assert admin_api.wait_for_jobs([waiting])[waiting]["state"] == "success"
    assert admin_api.worker("drain-1")["maintenance_comment"] is None
    assert worker.alive()
    assert {run.job for run in job_recorder.finished()} == {*running, waiting}


def test_update_comment_needs_maintenance(server, start_worker, cli, admin_api):
    start_worker("idle-1")
    before = admin_api.worker("idle-1")["desired_version"]
    result = cli("remote-edge-worker-update-maintenance-comment", "-H", "idle-1", "-c", "x")
    assert result.returncode == 1
    assert "not in maintenance" in squash(result.stderr)
    assert admin_api.worker("idle-1")["desired_version"] == before


def test_shutdown_finishes_running_jobs_then_exits(
    server, start_worker, cli, admin_api, job_recorder
):
    worker = start_worker("down-1", concurrency=1)
    job = admin_api.submit(job_recorder.command(seconds=8))  # outlasts the CLI call below
    wait_until(lambda: job_recorder.running(), message="job running")
    queued = admin_api.submit(job_recorder.command(seconds=0))

    cli("shutdown-remote-edge-worker", "-H", "down-1", check=True)
    assert worker.wait(timeout=30) == 0
    assert admin_api.job(job)["state"] == "success"
    assert admin_api.job(queued)["state"] == "queued"
    assert admin_api.worker("down-1")["state"] == "stopped"


def test_shutdown_all_asks_first(server, start_worker, cli, admin_api):
    workers = [start_worker(f"all-{i}") for i in range(2)]
    before = {w["hostname"]: w["desired_version"] for w in admin_api.workers()}

    refused = cli("shutdown-all-workers", input="n\n")
    assert refused.returncode != 0
    assert "nothing changed" in squash(refused.stderr)
    assert {w["hostname"]: w["desired_version"] for w in admin_api.workers()} == before
    assert all(w.alive() for w in workers)

    result = cli("shutdown-all-workers", "--yes", check=True)
    assert "all-0" in result.stdout and "all-1" in result.stdout
    assert [w.wait(timeout=30) for w in workers] == [0, 0]


def test_remove_only_an_offline_worker(server, start_worker, cli, cli_json, admin_api):
    worker = start_worker("gone-1")
    live = cli("remove-remote-edge-worker", "-H", "gone-1")
    assert live.returncode == 1 and "only an offline, stopped or revoked" in squash(live.stderr)
    assert admin_api.find_worker("gone-1") is not None

    unknown = cli("remove-remote-edge-worker", "-H", "never-was")
    assert unknown.returncode == 1 and "no worker named" in squash(unknown.stderr)

    worker.kill()  # a crash: the server sees it offline after the offline timeout
    admin_api.wait_for_worker("gone-1", lambda v: v["state"] == "offline", timeout=30)
    cli("remove-remote-edge-worker", "-H", "gone-1", check=True)
    assert admin_api.find_worker("gone-1") is None
    assert any(e["field"] == "worker" and e["new"] == "removed" for e in cli_json("audit"))


def test_local_worker_commands(server, start_worker, cli, cli_json, admin_api):
    worker = start_worker("local-1")
    status = cli_json("worker", "status", "-H", "local-1")
    assert status["running"] is True and status["pid"] == worker.pid

    cli("worker", "maintenance", "on", "-H", "local-1", "-c", "on-site fix", "--wait", check=True)
    view = admin_api.wait_for_worker("local-1", lambda v: v["state"] == "maintenance")
    assert view["maintenance_comment"] == "on-site fix"
    actors = {e["actor"] for e in cli_json("audit", "-H", "local-1")}
    assert "worker:local-1 (local)" in actors

    cli("worker", "maintenance", "off", "-H", "local-1", "--wait", check=True)
    admin_api.wait_for_worker("local-1", lambda v: v["state"] == "idle")

    bad = cli("worker", "maintenance", "sideways", "-H", "local-1")
    assert bad.returncode == 2

    cli("worker", "stop", "-H", "local-1", "--wait", check=True)
    assert worker.wait(timeout=5) == 0
    stopped = cli("worker", "status", "-H", "local-1")
    assert stopped.returncode == 1 and "stopped" in stopped.stdout
    missing = cli("worker", "status", "-H", "never-ran-here")
    assert missing.returncode == 1 and "no worker" in squash(missing.stderr)


@pytest.mark.parametrize("heartbeat", [30.0])
def test_changes_and_jobs_arrive_by_long_poll_not_heartbeat(
    edgefleet_env, server_factory, start_worker, cli_json, job_recorder, heartbeat
):
    """With a 30 s heartbeat and 30 s fallback poll, only the long-poll can deliver in time.
    The offline timeout matches the heartbeat, so the worker stays online and ``--wait``
    waits for it."""
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "150"
    server = server_factory()
    start_worker(
        "lp-1", concurrency=1, heartbeat_interval=heartbeat, extra_args=("--poll-interval", "30")
    )
    change = cli_json(
        "set-worker-concurrency", "-H", "lp-1", "-c", "3", "--wait", "--timeout", "20"
    )
    assert (change["not_acknowledged"], change["not_online"]) == ([], []), change
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"]) as api:
        job = api.submit(job_recorder.command(seconds=0))
        assert api.wait_for_jobs([job], timeout=20)[job]["state"] == "success"
