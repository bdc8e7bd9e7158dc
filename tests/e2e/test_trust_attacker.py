"""End-to-end: what a stolen edge box can do, tried as an attacker would.

A worker enrolled by join token runs jobs against an HTTPS server. Its whole home is then
copied to "the attacker's machine", and every operator command is tried with it, first as it
is and then with the worker's credential as the CLI's token; raw requests try to act as
another worker. None may change anything. Revoking the worker then stops its credential on
the very next request.

Every command is run by the CLI's entry point in the test's process, against the real HTTPS
server (a process start per command would be fifty seconds of imports); a sample of them
also runs as the installed console script, which must answer exactly as the in-process run
did.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from support import AdminApi, TlsFiles
from support.cli import describe, run_in_process, squash

pytestmark = pytest.mark.same_on_every_backend

VICTIM = "edge-victim"
THIEF = "edge-stolen"

#: Every operator command, with arguments that would be valid for an operator.
COMMANDS = [
    ("list-workers",),
    ("jobs", "list"),
    ("jobs", "show", "1"),
    ("logs", "1"),
    ("audit",),
    ("submit", "--", "sh", "-c", "echo owned"),
    ("cancel", "1"),
    ("set-worker-concurrency", "-H", VICTIM, "-c", "7"),
    ("set-worker-concurrency", "--all", "-c", "7"),
    ("set-worker-concurrency", "-H", VICTIM, "--reset"),
    ("add-worker-queues", "-H", VICTIM, "-q", "evil"),
    ("remove-worker-queues", "-H", VICTIM, "-q", "default"),
    ("reset-worker-queues", "-H", VICTIM),
    ("remote-edge-worker-request-maintenance", "-H", VICTIM, "--comments", "x"),
    ("remote-edge-worker-exit-maintenance", "-H", VICTIM),
    ("remote-edge-worker-update-maintenance-comment", "-H", VICTIM, "--comments", "x"),
    ("shutdown-remote-edge-worker", "-H", VICTIM),
    ("shutdown-all-workers", "--yes"),
    ("remove-remote-edge-worker", "-H", VICTIM),
    ("revoke-remote-edge-worker", "-H", VICTIM),
    ("token", "create", "--role", "admin", "--name", "mine"),
    ("token", "create-join", "--uses", "5"),
    ("token", "list"),
    ("token", "revoke", "ops"),
    ("ui-token",),
]
#: Commands also run as the console script, each as it is and with the credential.
AS_PROCESSES = [("list-workers",), ("set-worker-concurrency", "-H", VICTIM, "-c", "7"),
                ("ui-token",)]  # fmt: skip


def _state(api: AdminApi) -> dict:
    """Everything an attacker could want to change, as an admin reads it."""
    workers = {
        w["hostname"]: (w["desired_version"], w["concurrency"], w["queues"], w["state"])
        for w in api.call("GET", "/workers")
    }
    tokens = [(t["name"], t["role"], t["revoked_at"]) for t in api.call("GET", "/tokens")]
    return {
        "workers": workers,
        "tokens": tokens,
        "audit": len(api.call("GET", "/audit")),
        "jobs": len(api.call("GET", "/jobs")),
    }


@pytest.mark.timeout(240)
def test_a_stolen_worker_home_cannot_steer_the_fleet(
    server_factory, tls_files: TlsFiles, start_worker, cli, cli_json, edgefleet_env, tmp_path
):
    server = server_factory(tls=tls_files)
    secret = edgefleet_env["EDGEFLEET_SECRET"]
    admin = AdminApi(server.url, secret, verify=server.verify)
    central = {**edgefleet_env, "EDGEFLEET_CA_FILE": str(tls_files.ca)}
    start_worker(VICTIM, queues="default", env=central)
    cli_json("token", "create", "--role", "operator", "--name", "ops", env=central)
    join = cli_json("token", "create-join", "--uses", "1", env=central)["token"]

    remote = {k: v for k, v in central.items() if k != "EDGEFLEET_SECRET"}
    remote.pop("EDGEFLEET_DB_URL", None)
    home = tmp_path / "edge-home"
    home.mkdir()
    remote["EDGEFLEET_HOME"] = str(home)
    thief = start_worker(
        THIEF, queues="remote", env=remote, extra_args=("--join-token", join), wait=False
    )
    job_id = admin.submit(["sh", "-c", "echo from-remote"], queue="remote")
    job = admin.wait_for_jobs([job_id], timeout=60)[job_id]
    assert (job["state"], job["worker"]) == ("success", THIEF), job

    # The attacker's machine: a copy of the worker's home and nothing else.
    loot = tmp_path / "loot"
    shutil.copytree(home, loot)
    assert not (loot / "secret").exists()
    credential = json.loads((loot / "workers" / THIEF / "credential").read_text())["credential"]
    attacker = {**remote, "EDGEFLEET_HOME": str(loot)}
    # The thief reports "idle" on the heartbeat after its result: the snapshot waits for it,
    # so that only an attack could change what follows.
    admin.wait_for_worker(THIEF, lambda view: view["state"] == "idle", message="thief idle")
    before = _state(admin)
    with_token = {**attacker, "EDGEFLEET_TOKEN": credential}
    answers = {}
    for command in COMMANDS:
        as_is = run_in_process(*command, env=attacker)
        assert as_is.returncode != 0, describe(as_is)
        assert "Usage" not in as_is.stderr, describe(as_is)
        assert "no credentials" in as_is.stderr or "no shared secret" in as_is.stderr, describe(
            as_is
        )
        with_credential = run_in_process(*command, env=with_token)
        assert with_credential.returncode != 0, describe(with_credential)
        if command != ("ui-token",):  # ui-token needs the secret itself
            assert "HTTP 403" in with_credential.stderr, describe(with_credential)
        answers[command] = (as_is, with_credential)
    # The console script answers as the in-process runs did.
    as_is_runs = cli.run_all(AS_PROCESSES, env=attacker)
    with_credential_runs = cli.run_all(AS_PROCESSES, env=with_token)
    for command, *runs in zip(AS_PROCESSES, as_is_runs, with_credential_runs, strict=True):
        for run, same in zip(runs, answers[command], strict=True):
            assert (run.returncode, squash(run.stderr)) == (same.returncode, squash(same.stderr)), (
                f"{describe(run)}\n--- in process ---\n{describe(same)}"
            )
    assert _state(admin) == before

    # Raw requests: the credential acts as no other worker.
    edge = f"{server.url}/api/v1/edge"
    headers = {"Authorization": f"Bearer {credential}"}
    with httpx.Client(verify=server.verify, headers=headers, timeout=30) as raw:
        register = {
            "instance_id": "x" * 16,
            "concurrency": 1,
            "queues": ["default"],
            "heartbeat_interval": 1.0,
        }
        assert raw.post(f"{edge}/workers/{VICTIM}/register", json=register).status_code == 403
        assert raw.post(f"{edge}/workers/new-box/register", json=register).status_code == 403
        fetch = {"instance_id": "x" * 16, "free_slots": 1, "seq": 1}
        assert raw.post(f"{edge}/workers/{VICTIM}/fetch", json=fetch).status_code == 403
        assert raw.post(f"{edge}/workers/{VICTIM}/credential").status_code == 403
        assert raw.get(f"{server.url}/api/v1/whoami").json()["name"] == THIEF
        assert _state(admin) == before

        # Revoked: the credential is dead on its very next request, and the worker stops.
        cli("revoke-remote-edge-worker", "-H", THIEF, check=True, env=central)
        assert raw.get(f"{server.url}/api/v1/whoami").status_code == 401
        assert raw.post(f"{edge}/workers/{THIEF}/register", json=register).status_code == 401
    assert thief.wait(timeout=30) != 0
    assert admin.worker(THIEF)["state"] == "revoked"
    assert admin.worker(VICTIM)["state"] != "revoked"
    admin.close()
