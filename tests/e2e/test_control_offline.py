"""A worker restarted while the server is down keeps the settings the centre last gave it,
and takes the server's current ones as soon as it reaches the server again."""

from __future__ import annotations

import json

import pytest

from support import wait_until

pytestmark = pytest.mark.same_on_every_backend

HOST = "offline-edge"


def local_status(cli) -> dict | None:
    """``edgefleet worker status -o json`` while the worker runs, else None."""
    result = cli("worker", "status", "-H", HOST, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_a_worker_restarted_during_an_outage_runs_on_its_cached_state(
    server, server_factory, start_worker, cli, admin_api
):
    worker = start_worker(HOST, concurrency=1)
    cli("set-worker-concurrency", "-H", HOST, "-c", "3", "--wait", check=True)
    assert admin_api.worker(HOST)["applied_concurrency"] == 3
    assert worker.stop() == 0
    # Changed while the worker is away: it can learn this only from the server.
    cli("set-worker-concurrency", "-H", HOST, "-c", "2", check=True)
    server.stop()

    again = start_worker(HOST, concurrency=1, wait=False)
    local = wait_until(lambda: local_status(cli), message=lambda: again.log_tail())
    assert again.alive()
    assert (local["concurrency"], local["concurrency_source"], local["cached"]) == (
        3,
        "operator",
        True,
    )
    table = cli("worker", "status", "-H", HOST).stdout
    assert [line.split() for line in table.splitlines() if line.startswith("cached")] == [
        ["cached", "True"]
    ]
    restarted = server_factory(migrate=False, wait=False)

    restarted.wait_healthy()
    local = wait_until(
        lambda: (status := local_status(cli)) and not status["cached"] and status,
        message=lambda: again.log_tail(),
    )
    assert (local["concurrency"], local["concurrency_source"]) == (2, "operator")
