"""A real Airflow 3 deployment (SQLite) whose executor is ``edgefleet.airflow.EdgefleetExecutor``.

Airflow lives in its own virtualenv (``EDGEFLEET_TEST_AIRFLOW_PYTHON``, made by
``scripts/test.sh`` as ``.venv-airflow``); edgefleet's server and workers run from the test
environment, and the workers run each task with Airflow's Python. What costs time in Airflow
is paid once: ``airflow_home_template`` migrates a database and stores the test DAGs'
serialized form in it, and every deployment starts from a copy of that home, so only the
api-server and the scheduler run (no dag-processor: nothing parses DAGs after the copy).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from support.processes import ManagedProcess, kill_process_group

#: A Python with ``edgefleet[airflow]`` installed; without it (and without Airflow in the
#: test environment itself) the Airflow tests are skipped.
AIRFLOW_PYTHON_ENV = "EDGEFLEET_TEST_AIRFLOW_PYTHON"

DAGS = Path(__file__).resolve().parent.parent / "e2e" / "airflow_dags"

#: One Python process for both one-off commands: Airflow's imports cost more than the work.
_TEMPLATE_SCRIPT = """
import sys
from airflow.__main__ import main
for command in (["db", "migrate"], ["dags", "reserialize"]):
    sys.argv = ["airflow", *command]
    main()
"""


def airflow_python() -> str | None:
    """The Python to run Airflow with: ``EDGEFLEET_TEST_AIRFLOW_PYTHON``, else this one if
    it has Airflow, else ``None``."""
    configured = os.environ.get(AIRFLOW_PYTHON_ENV)
    if configured:
        return configured
    if importlib.util.find_spec("airflow") is not None:
        return sys.executable
    return None


def base_env(home: Path, dags: Path = DAGS) -> dict[str, str]:
    """Airflow settings every process of a deployment shares (the workers' jobs included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "edgefleet.airflow.EdgefleetExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }


def make_home_template(python: str, home: Path, log_path: Path, dags: Path = DAGS) -> Path:
    """An AIRFLOW_HOME with a migrated SQLite database that already holds the DAGs."""
    home.mkdir(parents=True)
    with open(log_path, "wb") as log:
        done = subprocess.run(
            [python, "-c", _TEMPLATE_SCRIPT],
            env=base_env(home, dags),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    if done.returncode != 0:
        raise AssertionError(
            f"preparing Airflow's database failed ({done.returncode}):\n"
            + log_path.read_text(errors="replace")[-4000:]
        )
    return home


def copy_home(template: Path, home: Path) -> Path:
    shutil.copytree(template, home, ignore=shutil.ignore_patterns("logs"))
    return home


def deployment_env(
    home: Path,
    python: str,
    api_port: int,
    secret: str,
    edgefleet_url: str,
    token_file: Path,
    dags: Path = DAGS,
) -> dict[str, str]:
    """Settings of one deployment: its api-server's port, short scheduler and task
    heartbeats (so a cleared task stops within a second), the executor's ``[edgefleet]``."""
    url = f"http://127.0.0.1:{api_port}"
    return {
        **base_env(home, dags),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-" + secret,
        "AIRFLOW__API__SECRET_KEY": "key-" + secret,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__EDGEFLEET__API_URL": edgefleet_url,
        "AIRFLOW__EDGEFLEET__TOKEN_FILE": str(token_file),
        "AIRFLOW__EDGEFLEET__PYTHON": python,
    }


class AirflowProcess(ManagedProcess):
    """An Airflow command with its children (the scheduler and api-server fork)."""

    def terminate(self, grace: float = 5.0) -> int | None:
        kill_process_group(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_process_group(self.pid)
            self.proc.wait(timeout=10)
        kill_process_group(self.pid)  # children that outlived it
        return self.proc.poll()


class AirflowApi:
    """Airflow's REST API (v2), signed in as the all-admins user."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def sign_in(self) -> bool:
        token = self.http.get("/auth/token").raise_for_status().json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        return True

    def call(self, method: str, path: str, **kwargs) -> dict:
        return self.http.request(method, "/api/v2" + path, **kwargs).raise_for_status().json()

    def tasks(self, dag_id: str, run_id: str) -> dict[str, dict]:
        found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t for t in found["task_instances"]}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """Every try of a task instance, the current one included."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return self.call("GET", path)["task_instances"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.call("GET", path, headers={"Accept": "application/json"})
        return str(body["content"])
