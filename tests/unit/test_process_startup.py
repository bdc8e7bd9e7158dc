"""A server or worker process loads only what it runs with: the test suite and every restart
start hundreds of them. Alembic (migrations), httpx (clients), prometheus_client (a scrape)
and httpx's own command-line tool (Rich, Pygments) are left for the rare path that needs them.
"""

from __future__ import annotations

import socket

import pytest

from support import modules_loaded_by, subprocess_env

#: Never needed to serve, or to run a worker (httpx._main is the command-line tool).
NOT_AT_START = ("alembic", "prometheus_client", "rich", "pygments")


def loaded_packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_a_server_on_a_current_database_starts_without_alembic_or_httpx(
    edgefleet_env: dict[str, str], schema_template
) -> None:
    """The server runs up to binding its port (taken here, so it stops there)."""
    schema_template.apply(edgefleet_env["EDGEFLEET_DB_URL"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loaded, said = modules_loaded_by(["server", "--port", str(port)], edgefleet_env)
    assert "Application startup complete" in said, said
    assert "address already in use" in said, said
    assert not loaded_packages(loaded) & {*NOT_AT_START, "httpx"}
    if edgefleet_env["EDGEFLEET_DB_URL"].startswith("sqlite"):
        assert "psycopg" not in loaded_packages(loaded)  # PostgreSQL's driver


@pytest.mark.same_on_every_backend
def test_a_worker_starts_without_httpx_command_line_tool(tmp_path) -> None:
    """The worker imports all it runs with, then stops at its bad URL."""
    env = subprocess_env(EDGEFLEET_HOME=str(tmp_path))
    loaded, said = modules_loaded_by(["worker", "-H", "w1", "--api-url", "ftp://x"], env)
    assert "bad API URL" in said, said
    assert {"edgefleet.worker.agent", "httpx"} <= loaded
    assert not loaded_packages(loaded) & set(NOT_AT_START)
