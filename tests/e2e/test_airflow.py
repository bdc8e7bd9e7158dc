"""End-to-end: a real Airflow 3 (SQLite; api-server, scheduler and dag-processor) whose
executor is ``edgefleet.airflow.EdgefleetExecutor``, a real edgefleet server and real workers
that run the tasks through the Task SDK and reach Airflow's execution API over HTTP.

Needs the ``airflow`` extra in the test environment (``pip install -e '.[airflow]'``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.processes import ManagedProcess, free_port, kill_process_group, spawn
from support.waiting import wait_until

pytest.importorskip(
    "airflow.sdk.execution_time.execute_workload",
    reason="Airflow 3 is not installed: pip install -e '.[airflow]' to run this test",
)

pytestmark = pytest.mark.same_on_every_backend

DAGS = Path(__file__).parent / "airflow_dags"
AIRFLOW = Path(sys.executable).parent / "airflow"


class AirflowProcess(ManagedProcess):
    """An Airflow command with its children (the api-server forks workers)."""

    def terminate(self, grace: float = 5.0) -> int | None:
        kill_process_group(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_process_group(self.pid)
            self.proc.wait(timeout=10)
        kill_process_group(self.pid)  # children that outlived it
        return self.proc.poll()


def airflow_env(tmp_path: Path, base: dict[str, str], api_port: int) -> dict[str, str]:
    """Airflow's settings for every process of the test, the workers' jobs included: one
    AIRFLOW_HOME (SQLite, the log folder the api-server reads), short intervals."""
    url = f"http://127.0.0.1:{api_port}"
    markers = tmp_path / "markers"
    markers.mkdir()
    token_file = tmp_path / "edgefleet-token"
    return {
        **base,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "edgefleet.airflow.EdgefleetExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-" + base["EDGEFLEET_SECRET"],
        "AIRFLOW__API__SECRET_KEY": "key-" + base["EDGEFLEET_SECRET"],
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
        "AIRFLOW__EDGEFLEET__API_URL": base["EDGEFLEET_API_URL"],
        "AIRFLOW__EDGEFLEET__TOKEN_FILE": str(token_file),
        "AIRFLOW__EDGEFLEET__PYTHON": sys.executable,
        "FLEET_MARKERS": str(markers),
    }


class AirflowApi:
    """Airflow's REST API (v2), signed in as the all-admins user."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def sign_in(self) -> bool:
        token = self.http.get("/auth/token").raise_for_status().json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        return True

    def call(self, method: str, path: str, **kwargs) -> dict:
        return self.http.request(method, "/api/v2" + path, **kwargs).raise_for_status().json()

    def tasks(self, run_id: str) -> dict[str, dict]:
        found = self.call("GET", f"/dags/fleet/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t for t in found["task_instances"]}


@pytest.mark.timeout(900)  # Airflow's start-up and each task's imports take tens of seconds
def test_a_dag_runs_on_edgefleet_workers(
    tmp_path, edgefleet_env, server, cli, cli_json, start_worker, processes
):
    api_port = free_port()
    env = airflow_env(tmp_path, edgefleet_env, api_port)
    token = cli_json("token", "create", "--role", "operator", "--name", "airflow")["token"]
    Path(env["AIRFLOW__EDGEFLEET__TOKEN_FILE"]).write_text(token)
    os.chmod(env["AIRFLOW__EDGEFLEET__TOKEN_FILE"], 0o600)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)

    def start(*args: str) -> None:
        argv = [str(AIRFLOW), *args]
        log_path = processes.log_path("airflow-" + args[0])
        processes.add(AirflowProcess(args[0], argv, spawn(argv, env, log_path), log_path))

    for command in ("api-server", "scheduler", "dag-processor"):
        start(command)
    # Workers on two sites, each serving one of the DAG's queues; Airflow is in their env.
    start_worker("site-a-1", 2, "default", env=env)
    start_worker("site-b-1", 1, "site-b", env=env)

    airflow = AirflowApi(f"http://127.0.0.1:{api_port}")
    wait_until(airflow.sign_in, timeout=120, ignore=(httpx.HTTPError,), message="api-server")
    wait_until(
        lambda: airflow.call("GET", "/dags/fleet"),
        timeout=120,
        ignore=(httpx.HTTPError,),
        message="the DAG parsed",
    )
    airflow.call("PATCH", "/dags/fleet", json={"is_paused": False})
    airflow.call("POST", "/dags/fleet/dagRuns", json={"dag_run_id": "r1", "logical_date": None})

    # Cleared while it runs: its job is stopped and the next try runs.
    marker = Path(env["FLEET_MARKERS"]) / "cleared-running"
    wait_until(marker.exists, timeout=120, message="the cleared task running")
    # A concurrency change made mid-run is adopted by the worker, without a restart.
    cli("set-worker-concurrency", "-H", "site-b-1", "-c", "3", check=True)
    wait_until(
        lambda: _worker(cli_json, "site-b-1")["applied_concurrency"] == 3,
        message="site-b-1 applying concurrency 3",
    )
    airflow.call(
        "POST",
        "/dags/fleet/clearTaskInstances",
        json={"dag_run_id": "r1", "task_ids": ["cleared"], "only_failed": False, "dry_run": False},
    )

    def finished() -> dict[str, dict] | None:
        tasks = airflow.tasks("r1")
        done = all(t["state"] in ("success", "failed") for t in tasks.values())
        return tasks if done else None

    tasks = wait_until(finished, timeout=180, interval=1, message=lambda: airflow.tasks("r1"))
    states = {name: (t["state"], t["try_number"]) for name, t in tasks.items()}
    assert states == {
        "first": ("success", 1),
        "flaky": ("success", 2),
        "last": ("success", 1),
        "cleared": ("success", 2),
    }
    run = airflow.call("GET", "/dags/fleet/dagRuns/r1")
    assert run["state"] == "success"

    # Each task's log reads through Airflow's API.
    log = airflow.call(
        "GET",
        "/dags/fleet/dagRuns/r1/taskInstances/first/logs/1",
        headers={"Accept": "application/json"},
    )
    assert "hello from first" in str(log["content"])
    failed_try = airflow.call(
        "GET",
        "/dags/fleet/dagRuns/r1/taskInstances/flaky/logs/1",
        headers={"Accept": "application/json"},
    )
    assert "the first try fails on purpose" in str(failed_try["content"])

    # The tasks ran as edgefleet jobs on the queues they named; the cleared try was stopped.
    jobs = cli_json("jobs", "list")
    assert {j["queue"] for j in jobs} == {"default", "site-b"}
    assert all(j["key"].startswith("airflow:") for j in jobs)
    assert len([j for j in jobs if j["queue"] == "site-b"]) == 3  # flaky ran twice
    assert len([j for j in jobs if j["queue"] == "default"]) == 3  # cleared ran twice
    assert _worker(cli_json, "site-b-1")["concurrency"] == 3


def _worker(cli_json, hostname: str) -> dict:
    return next(w for w in cli_json("list-workers") if w["hostname"] == hostname)
