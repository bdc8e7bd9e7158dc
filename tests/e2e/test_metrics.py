"""Prometheus metrics: fleet and job counts as a scraper sees them."""

from __future__ import annotations

import httpx
import pytest

from edgefleet.auth import Identity, mint_token

pytestmark = pytest.mark.same_on_every_backend


def scrape(url: str, secret: str) -> dict[str, float]:
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401  # a token is needed
    viewer = mint_token(secret, Identity("prometheus", "viewer"))
    response = httpx.get(
        f"{url}/metrics", timeout=10, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_show_workers_desired_vs_applied_and_jobs(server, start_worker, cli, admin_api):
    start_worker("m-1", concurrency=2)
    cli("set-worker-concurrency", "-H", "m-1", "-c", "4", "--wait", check=True)
    job = admin_api.submit(["true"])
    admin_api.wait_for_jobs([job])
    # The worker reports "idle" on the heartbeat after it delivered the result.
    admin_api.wait_for_worker("m-1", lambda view: view["state"] == "idle")

    samples = scrape(server.url, admin_api.secret)
    assert samples['edgefleet_worker_concurrency{hostname="m-1"}'] == 4
    assert samples['edgefleet_worker_applied_concurrency{hostname="m-1"}'] == 4
    assert samples['edgefleet_worker_versions_behind{hostname="m-1"}'] == 0
    assert samples['edgefleet_workers{state="idle"}'] == 1
    assert samples['edgefleet_jobs{state="success"}'] == 1
