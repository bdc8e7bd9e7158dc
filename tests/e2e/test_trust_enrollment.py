"""End-to-end: a worker that holds no secret enrolls with a join token and lives on its own
credential; operators use role tokens from another machine.

Real processes: the server holds the secret; the worker and the remote CLI each get a home
of their own and an environment without ``EDGEFLEET_SECRET`` or a database URL.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from support import AdminApi, WorkerProcess, squash, wait_until
from support.cli import describe

pytestmark = pytest.mark.same_on_every_backend


def _remote_env(edgefleet_env: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    """The environment of another machine: its own home, no secret, no database."""
    home.mkdir(exist_ok=True)
    env = {
        k: v for k, v in edgefleet_env.items() if k not in ("EDGEFLEET_SECRET", "EDGEFLEET_DB_URL")
    }
    env["EDGEFLEET_HOME"] = str(home)
    env.update(extra)
    return env


def _registered(api: AdminApi, worker: WorkerProcess) -> dict:
    def check() -> dict | None:
        assert worker.alive(), f"{worker!r} exited {worker.returncode}:\n{worker.log_tail()}"
        view = api.find_worker(worker.hostname)
        ready = (
            view
            and view["pid"] == worker.pid
            and view["applied_version"] == view["desired_version"]
        )
        return view if ready else None

    return wait_until(check, timeout=30, message=lambda: worker.log_tail())


def _exit_code(worker: WorkerProcess, timeout: float = 30) -> int:
    return worker.wait(timeout)


def _runs_a_job(api: AdminApi, queue: str) -> None:
    job_id = api.submit(["sh", "-c", "echo enrolled-ok"], queue=queue)
    job = api.wait_for_jobs([job_id], timeout=60)[job_id]
    assert job["state"] == "success", job
    assert "enrolled-ok" in api.job_log(job_id)


def test_a_worker_enrolls_with_a_join_token_and_keeps_its_credential(
    server, admin_api, cli_json, cli, edgefleet_env, start_worker, tmp_path
):
    join = cli_json("token", "create-join", "--uses", "1", "--label", "site=north")
    assert join["token"].startswith("efj_") and join["expires_at"]
    home = tmp_path / "edge-home"
    env = _remote_env(edgefleet_env, home)
    queue = "enrolled"

    worker = start_worker(
        "edge-enrolled",
        queues=queue,
        extra_args=("--join-token", join["token"]),
        env=env,
        wait=False,
    )
    view = _registered(admin_api, worker)
    assert view["labels"].get("site") == "north"
    credential = home / "workers" / "edge-enrolled" / "credential"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert credential.read_text().startswith('{"credential": "efw_')
    assert not (home / "secret").exists()
    _runs_a_job(admin_api, queue)
    assert worker.stop() == 0

    # Restarted without the join token, it is still itself.
    again = start_worker("edge-enrolled", queues=queue, env=env, wait=False)
    _registered(admin_api, again)
    _runs_a_job(admin_api, queue)
    assert not (home / "secret").exists()

    # The join token was for one worker only.
    other = start_worker(
        "edge-second",
        extra_args=("--join-token", join["token"]),
        env=_remote_env(edgefleet_env, tmp_path / "second-home"),
        wait=False,
    )
    assert _exit_code(other) != 0
    refusal = [line for line in other.log_text().splitlines() if line.startswith("error:")]
    assert len(refusal) == 1 and "join token refused (HTTP 401)" in refusal[0], other.log_text()
    assert admin_api.find_worker("edge-second") is None

    # Revoked, the running worker stops, and cannot start again on that credential.
    cli("revoke-remote-edge-worker", "-H", "edge-enrolled", check=True)
    assert _exit_code(again) != 0
    assert "revoked or expired" in again.log_text()
    assert admin_api.worker("edge-enrolled")["state"] == "revoked"
    third = start_worker("edge-enrolled", queues=queue, env=env, wait=False)
    assert _exit_code(third) != 0
    assert "create-join" in squash(third.log_text())


def test_a_worker_without_any_identity_refuses_to_start(
    server, edgefleet_env, start_worker, tmp_path
):
    worker = start_worker(
        "edge-nobody", env=_remote_env(edgefleet_env, tmp_path / "nobody"), wait=False
    )
    assert _exit_code(worker) != 0
    assert "edgefleet token create-join" in worker.log_text()
    assert not (tmp_path / "nobody" / "secret").exists()


def test_operator_tokens_by_role_from_a_remote_cli(server, cli, cli_json, edgefleet_env, tmp_path):
    created = cli_json("token", "create", "--role", "viewer", "--name", "dashboard", "--ttl", "90d")
    assert created["token"].startswith("efo_")
    assert (created["name"], created["role"]) == ("dashboard", "viewer")
    remote = _remote_env(edgefleet_env, tmp_path / "laptop", EDGEFLEET_TOKEN=created["token"])

    listed = cli("list-workers", "-o", "json", env=remote)
    assert listed.returncode == 0, describe(listed)
    refused = cli("set-worker-concurrency", "--all", "-c", "2", env=remote)
    assert refused.returncode == 1, describe(refused)
    assert "403" in refused.stderr
    assert not (tmp_path / "laptop" / "secret").exists()

    token_file = tmp_path / "laptop" / "token"
    token_file.write_text(created["token"] + "\n")
    token_file.chmod(0o600)
    by_file = {k: v for k, v in remote.items() if k != "EDGEFLEET_TOKEN"}
    assert cli("--token-file", token_file, "list-workers", env=by_file).returncode == 0

    tokens = cli_json("token", "list")
    assert [t["name"] for t in tokens] == ["dashboard"]
    assert created["token"] not in cli("token", "list", "-o", "json", check=True).stdout

    cli("token", "revoke", "dashboard", check=True)
    revoked = cli("list-workers", env=remote)
    assert revoked.returncode == 1, describe(revoked)
    assert "401" in revoked.stderr

    nothing = cli("list-workers", env=by_file)
    assert nothing.returncode == 1
    assert "EDGEFLEET_TOKEN" in nothing.stderr
