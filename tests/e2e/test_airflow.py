"""End-to-end: a real Airflow 3 (SQLite; api-server and scheduler) whose executor is
``edgefleet.airflow.EdgefleetExecutor``, a real edgefleet server and real workers that run the
tasks through the Task SDK and reach Airflow's execution API over HTTP.

Airflow runs from ``EDGEFLEET_TEST_AIRFLOW_PYTHON`` (a Python with ``edgefleet[airflow]``;
``scripts/test.sh`` makes one); edgefleet's server and workers run from the test environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edgefleet.airflow.jobs import job_key
from support.airflow_stack import (
    AIRFLOW_PYTHON_ENV,
    AirflowApi,
    AirflowProcess,
    airflow_python,
    base_env,
    copy_home,
    deployment_env,
    make_home_template,
)
from support.processes import free_port, spawn
from support.waiting import wait_until

PYTHON = airflow_python()
RUN = ("fleet", "r1")
PROBE = Path(__file__).resolve().parent.parent / "support" / "airflow_probe.py"

pytestmark = [
    pytest.mark.same_on_every_backend,
    pytest.mark.skipif(
        PYTHON is None,
        reason=f"no Airflow: set {AIRFLOW_PYTHON_ENV} to a Python with 'edgefleet[airflow]' "
        "installed (scripts/test.sh makes .venv-airflow)",
    ),
]


@pytest.fixture(scope="session")
def airflow_home_template(tmp_path_factory) -> Path:
    """Airflow's migrated database with the test DAG stored, made once per session."""
    root = tmp_path_factory.mktemp("airflow-template")
    return make_home_template(PYTHON, root / "home", root / "template.log")


@pytest.mark.timeout(600)  # Airflow's start-up and each task's imports on a loaded machine
def test_a_dag_runs_on_edgefleet_workers(
    tmp_path, airflow_home_template, edgefleet_env, server, cli, cli_json, start_worker, processes
):
    token_file = tmp_path / "edgefleet-token"
    token_file.write_text(_operator_token(cli_json))
    os.chmod(token_file, 0o600)
    api_port = free_port()
    env = {
        **edgefleet_env,
        **deployment_env(
            copy_home(airflow_home_template, tmp_path / "airflow"),
            PYTHON,
            api_port,
            edgefleet_env["EDGEFLEET_SECRET"],
            edgefleet_env["EDGEFLEET_API_URL"],
            token_file,
        ),
        "FLEET_MARKERS": str(tmp_path),
    }
    for command in ("api-server", "scheduler"):
        argv = [PYTHON, "-m", "airflow", command]
        log_path = processes.log_path("airflow-" + command)
        processes.add(AirflowProcess(command, argv, spawn(argv, env, log_path), log_path))
    # Workers on two sites, each serving one of the DAG's queues; their jobs get Airflow's env.
    start_worker("site-a-1", 2, "default", env=env)
    start_worker("site-b-1", 1, "site-b", env=env)

    airflow = AirflowApi(f"http://127.0.0.1:{api_port}")
    wait_until(airflow.sign_in, timeout=300, ignore=(httpx.HTTPError,), message="api-server")
    airflow.call("POST", "/dags/fleet/dagRuns", json={"dag_run_id": "r1", "logical_date": None})

    # Cleared while it runs: the Task SDK stops it and the next try runs.
    marker = tmp_path / "cleared-running"
    wait_until(marker.exists, timeout=300, message=lambda: airflow.tasks(*RUN))
    # A concurrency change made mid-run is adopted by the worker, without a restart.
    site_b = _worker(cli_json, "site-b-1")
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

    def run_ended() -> str | None:
        state = airflow.call("GET", "/dags/fleet/dagRuns/r1")["state"]
        return state if state in ("success", "failed") else None

    state = wait_until(
        run_ended,
        timeout=300,
        interval=1,
        ignore=(httpx.TransportError,),  # a busy api-server's slow answer
        message=lambda: airflow.tasks(*RUN),
    )
    tasks = airflow.tasks(*RUN)
    assert {name: (t["state"], t["try_number"]) for name, t in tasks.items()} == {
        "first": ("success", 1),
        "flaky": ("success", 2),
        "cleared": ("success", 2),
    }
    assert state == "success"
    tries = {t["try_number"]: t["state"] for t in airflow.tries("fleet", "r1", "flaky")}
    assert tries == {1: "failed", 2: "success"}

    # Task logs read through Airflow's API, a failed try's too.
    assert "hello from first" in airflow.log("fleet", "r1", "first", 1)
    assert "the first try fails on purpose" in airflow.log("fleet", "r1", "flaky", 1)

    # The tasks ran as edgefleet jobs on the queues they named, one job per try.
    jobs = cli_json("jobs", "list")
    assert sorted((j["queue"], j["key"].split(":")[2]) for j in jobs) == [
        ("default", "1"),  # first
        ("default", "1"),  # cleared, stopped by the clear
        ("default", "2"),  # cleared again
        ("site-b", "1"),  # flaky, failed on purpose
        ("site-b", "2"),  # flaky's retry
    ]
    # The worker took the change in the same process.
    after = _worker(cli_json, "site-b-1")
    assert (after["pid"], after["concurrency"]) == (site_b["pid"], 3)


def _worker(cli_json, hostname: str) -> dict:
    return next(w for w in cli_json("list-workers") if w["hostname"] == hostname)


def test_a_restarted_scheduler_adopts_its_jobs_by_key(
    tmp_path, edgefleet_env, server, admin_api, cli_json, start_worker
):
    """``try_adopt_task_instances`` against a real server and worker: the jobs of the task
    instances' current tries are taken over (running or ended), the rest handed back; one
    request looks them all up, one per sync reads them, a running one's output reads through
    ``get_task_log``, and ``end`` cancels nothing."""
    start_worker("site-a-1", 3, "default")
    ids = {name: f"0190a7c8-0000-7000-8000-00000000000{i}" for i, name in enumerate("abcdef")}

    def submit(name: str, tries: int, command: list[str], queue: str = "default") -> int:
        job = {"command": command, "queue": queue, "key": job_key(ids[name], tries)}
        return admin_api.call("POST", "/jobs", expect=201, json=job)["id"]

    python = [sys.executable, "-c"]
    ended = [submit("a", 1, ["true"]), submit("b", 2, ["false"])]
    admin_api.wait_for_jobs(ended)
    submit("c", 1, [*python, "import time; time.sleep(2)"])  # running when adopted
    still = "print('started', flush=True); import time; time.sleep(300)"
    running_job = submit("d", 1, [*python, still])  # still running at the end
    cancelled = submit("e", 1, ["true"], queue="nobody-serves")
    admin_api.call("POST", f"/jobs/{cancelled}/cancel", expect=200)
    submit("f", 1, ["true"], queue="nobody-serves")
    submit("f", 2, ["true"], queue="nobody-serves")  # an older try's job is not this try's

    # The probe reads a running task's output: it has reached the server first.
    wait_until(lambda: "started" in admin_api.job_log(running_job), message="job d's output")
    token_file = tmp_path / "token"
    token_file.write_text(_operator_token(cli_json))
    env = {
        **edgefleet_env,
        **base_env(tmp_path / "airflow"),
        "AIRFLOW__EDGEFLEET__API_URL": edgefleet_env["EDGEFLEET_API_URL"],
        "AIRFLOW__EDGEFLEET__TOKEN_FILE": str(token_file),
    }
    tis = [[ids["a"], 1], [ids["b"], 2], [ids["c"], 1], [ids["d"], 1], [ids["e"], 1], [ids["f"], 3]]
    spec = json.dumps({"tis": tis, "timeout": 60, "keep": 1, "logs": True})
    done = subprocess.run(
        [PYTHON, "-P", str(PROBE), spec], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report["left"]) == [ids["e"], ids["f"]]
    assert report["adopted"] == 4
    assert report["states"] == {ids["a"]: "success", ids["b"]: "failed", ids["c"]: "success"}
    assert report["still_running"] == [ids["d"]]
    assert set(report["requests_per_sync"]) == {1}
    sources, output = report["logs"][ids["d"]]  # a running task's output, from its job
    assert sources[0].startswith("edgefleet job ") and "started" in output[0]
    assert report["end_requests"] == ["POST /jobs/status"]
    running = [j for j in cli_json("jobs", "list") if j["key"] == job_key(ids["d"], 1)]
    assert [j["state"] for j in running] == ["running"]


def _operator_token(cli_json) -> str:
    return cli_json("token", "create", "--role", "operator", "--name", "airflow")["token"]
