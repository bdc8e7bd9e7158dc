"""Shared test infrastructure for edgefleet's unit and end-to-end tests.

The fixtures in ``tests/conftest.py`` are thin wrappers around these modules; import from here
when a test needs a helper directly (``from support import wait_until, max_overlap``).

- ``waiting``   ``wait_until`` / ``async_wait_until``: polling with a deadline, never fixed sleeps
- ``database``  ``fresh_database``: a new SQLite file, or a new PostgreSQL database when
                ``EDGEFLEET_TEST_PG_URL`` is set; ``PgCluster``: a throwaway PostgreSQL server;
                ``SchemaTemplate``: a migrated database for the cost of a file copy
- ``processes`` real ``edgefleet server`` / ``edgefleet worker`` subprocesses and their clean-up
- ``cli``       ``Cli``: runs the installed ``edgefleet`` console script with a test environment
- ``api``       ``AdminApi`` and token helpers for HTTP-level tests against a real server
- ``records``   ``JobRecorder``: jobs that log their own start/end times, and overlap maths
- ``tls``       ``make_tls``: a throwaway CA and certificates for HTTPS servers and clients
- ``edge_server`` ``ScriptedEdgeServer``: the worker API in process, scripted by the test
- ``network``   ``FaultProxy``: a loopback TCP proxy that cuts, stalls or slows a link
- ``soak``      ``run_soak``: a fleet under chaos and the count of every job (with
                ``soak_accounting``), for tests/e2e/test_soak.py and bench/soak.py
"""

from support.api import AdminApi, admin_token, auth_header, flag_desired_state, worker_token
from support.cli import (
    EDGEFLEET,
    Cli,
    capture_admin_requests,
    clean_cli_env,
    modules_loaded_by,
    squash,
)
from support.database import (
    PG_URL_ENV,
    PgCluster,
    SchemaTemplate,
    backend_name,
    fresh_database,
    statements_run,
    upgrade_database,
)
from support.edge_server import ScriptedEdgeServer
from support.network import FaultProxy
from support.processes import (
    ManagedProcess,
    ProcessRegistry,
    ServerProcess,
    WorkerProcess,
    free_port,
    subprocess_env,
)
from support.records import JobRecorder, JobRun, max_overlap, parse_time, running_at
from support.tls import TlsFiles, make_tls
from support.waiting import WaitTimeout, async_wait_until, wait_until

__all__ = [
    "capture_admin_requests",
    "clean_cli_env",
    "EDGEFLEET",
    "PG_URL_ENV",
    "AdminApi",
    "Cli",
    "FaultProxy",
    "JobRecorder",
    "JobRun",
    "ManagedProcess",
    "PgCluster",
    "ProcessRegistry",
    "SchemaTemplate",
    "ScriptedEdgeServer",
    "ServerProcess",
    "TlsFiles",
    "WaitTimeout",
    "WorkerProcess",
    "admin_token",
    "async_wait_until",
    "auth_header",
    "backend_name",
    "flag_desired_state",
    "free_port",
    "fresh_database",
    "make_tls",
    "max_overlap",
    "parse_time",
    "running_at",
    "squash",
    "subprocess_env",
    "statements_run",
    "modules_loaded_by",
    "upgrade_database",
    "wait_until",
    "worker_token",
]
