"""Apache Airflow 3 with the edge3 provider as a peer to measure against: a cached throwaway
venv, one deployment (SQLite, ``airflow api-server``, ``airflow edge worker``) per run, and
a simulated worker of its protocol for ``_sim``'s load loops.

Only the provider's documented interfaces are used: its configuration, its CLI, its worker
API (a JWT signed with ``[api_auth] jwt_secret`` whose ``method`` claim names the called path)
and its ``edge_worker`` table, which ``airflow edge list-workers`` reads.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import jwt
from _sim import Request

from support import ProcessRegistry, wait_until
from support.airflow_stack import AirflowProcess
from support.processes import spawn

AIRFLOW_VERSION = "3.3.2"
EDGE3_VERSION = "5.1.0"
#: The provider's documented defaults (``[edge] job_poll_interval``, ``heartbeat_interval``).
JOB_POLL_INTERVAL = 5
HEARTBEAT_INTERVAL = 30
API_PREFIX = "/edge_worker/v1/"


def default_venv(airflow_version: str, edge3_version: str) -> Path:
    cache = Path(tempfile.gettempdir()) / "edgefleet-bench-cache"
    return cache / f"airflow-{airflow_version}-edge3-{edge3_version}"


def ensure_venv(venv: Path, airflow_version: str, edge3_version: str) -> Path:
    """The venv at ``venv``, installed once (pip takes minutes); a stamp marks it complete,
    so an interrupted install is redone rather than trusted."""
    stamp = venv / ".edgefleet-bench-installed"
    if stamp.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    packages = [
        f"apache-airflow=={airflow_version}",
        f"apache-airflow-providers-edge3=={edge3_version}",
    ]
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True)
    stamp.write_text(f"{' '.join(packages)}\n")
    return venv


class Edge3Deployment:
    """One Airflow home: a migrated SQLite database, an api-server with the edge worker API
    enabled, edge workers, and the ``airflow`` CLI, all with the provider's defaults."""

    def __init__(
        self,
        venv: Path,
        home: Path,
        registry: ProcessRegistry,
        port: int,
        versions: tuple[str, str] = (AIRFLOW_VERSION, EDGE3_VERSION),
    ) -> None:
        self.venv, self.home, self.registry, self.port = venv, home, registry, port
        self.airflow_version, self.edge3_version = versions
        self.secret = secrets.token_hex(40)  # HS512 wants at least 64 bytes
        # Not the default file name: the provider's CLI refuses to run on the default URL.
        self.db_path = home / "edge3.db"
        (home / "dags").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        return (
            base
            | {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": "airflow.providers.edge3.executors.EdgeExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.secret,
                "AIRFLOW__EDGE__API_ENABLED": "True",
                "AIRFLOW__EDGE__API_URL": f"{self.url}{API_PREFIX}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "NO_PROXY": "*",
                "PYTHONUNBUFFERED": "1",
            }
            | extra
        )

    def airflow(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "airflow"), *args]

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.airflow(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)}: exit {result.returncode}\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def start(self, name: str, args: Sequence[str], **env: str) -> AirflowProcess:
        argv = self.airflow(*args)
        log = self.registry.log_path(f"airflow-{name}")
        process = AirflowProcess(name, argv, spawn(argv, self.env(**env), log), log)
        self.registry.add(process)
        return process

    def start_api_server(self) -> AirflowProcess:
        """The api-server with its default worker count (one); logging at WARNING like the
        edgefleet server it is compared with (no per-request access log line)."""
        args = ("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        return self.start("api-server", args, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")

    def wait_healthy(self, server: AirflowProcess, timeout: float = 300.0) -> None:
        def up() -> bool:
            if not server.alive():
                raise RuntimeError(f"api-server exited:\n{server.log_tail()}")
            try:
                return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=timeout, interval=0.5, message="airflow api-server healthy")

    def start_worker(self, hostname: str, concurrency: int) -> AirflowProcess:
        args = ("edge", "worker", "--edge-hostname", hostname, "--concurrency", str(concurrency))
        worker = self.start(f"worker-{hostname}", args)
        wait_until(
            lambda: self.reported_concurrency(hostname) == concurrency,
            timeout=300,
            interval=0.5,
            message=lambda: f"edge worker {hostname} registered; log:\n{worker.log_tail()}",
        )
        return worker

    def reported_concurrency(self, hostname: str) -> int | None:
        """The concurrency the worker last reported (what ``airflow edge list-workers``
        shows), read from the provider's ``edge_worker`` table."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT sysinfo FROM edge_worker WHERE worker_name = ?", (hostname,)
            ).fetchone()
        if not row or not row[0]:
            return None
        return json.loads(row[0]).get("concurrency")

    def token(self, path: str) -> str:
        """A worker API token as the provider's workers send it: HS512 over the shared
        secret, audience ``api``, valid 30 s, bound to the called path."""
        now = int(time.time())
        claims = {"jti": uuid.uuid4().hex, "aud": "api", "nbf": now, "iat": now}
        claims |= {"exp": now + 30, "method": path}
        return jwt.encode(claims, self.secret, algorithm="HS512")


class Edge3Sim:
    """A worker of the edge3 provider's protocol: register by POST, heartbeat by PATCH on
    ``worker/{name}``, a fresh path-bound token per request as its workers sign them."""

    def __init__(self, deployment: Edge3Deployment, name: str, concurrency: int = 2) -> None:
        self.deployment, self.path = deployment, f"worker/{name}"
        self.sysinfo = {
            "status": 20,
            "airflow_version": deployment.airflow_version,
            "edge_provider_version": deployment.edge3_version,
            "concurrency": concurrency,
            "free_concurrency": concurrency,
        }

    def _call(self, method: str, state: str) -> Request:
        headers = {"Authorization": self.deployment.token(self.path)}
        body = {"state": state, "jobs_active": 0, "queues": None, "sysinfo": self.sysinfo}
        return method, f"{API_PREFIX}{self.path}", headers, body

    def register(self) -> Request:
        return self._call("POST", "starting")

    def heartbeat(self) -> Request:
        return self._call("PATCH", "idle")
