"""HTTP access to a running server: tokens, and an admin client for API-level tests."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from edgefleet.auth import Identity, mint_token
from edgefleet.client_auth import TokenAuth
from edgefleet.contract import API_PREFIX
from support.waiting import wait_until

ADMIN_SUBJECT = "test-admin"
FINISHED = frozenset({"success", "failed"})


def flag_desired_state() -> dict[str, Any]:
    """A fresh desired state as a server sends it to a worker nobody has steered (version 1,
    the worker's own flag in force): for tests that script the server's answers."""
    return {
        "version": 1,
        "concurrency": 1,
        "concurrency_source": "flag",
        "queues": ["default"],
        "maintenance": False,
        "maintenance_comment": None,
        "shutdown": False,
    }


def admin_token(secret: str, subject: str = ADMIN_SUBJECT, ttl: float = 60) -> str:
    return mint_token(secret, Identity(subject=subject, role="admin"), ttl=ttl)


def worker_token(secret: str, hostname: str, ttl: float = 60) -> str:
    return mint_token(secret, Identity(subject=hostname, role="worker"), ttl=ttl)


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class AdminApi:
    """An admin client for ``{base_url}/api/v1``; every request carries a fresh admin token.

    ``request`` returns the raw ``httpx.Response`` (for status-code tests); the helpers below
    assert success and return parsed JSON.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        subject: str = ADMIN_SUBJECT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            auth=TokenAuth(secret, Identity(subject=subject, role="admin")),
            timeout=httpx.Timeout(30.0),
            verify=verify,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AdminApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- raw -----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        assert response.status_code == expect, (
            f"{method} {path}: expected {expect}, got {response.status_code}: {response.text}"
        )
        return response.json() if response.content else None

    # --- workers -------------------------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        return self.call("GET", "/workers")

    def find_worker(self, hostname: str) -> dict[str, Any] | None:
        return next((w for w in self.workers() if w["hostname"] == hostname), None)

    def worker(self, hostname: str) -> dict[str, Any]:
        view = self.find_worker(hostname)
        assert view is not None, (
            f"worker {hostname!r} not in {[w['hostname'] for w in self.workers()]}"
        )
        return view

    def set_concurrency(self, hostname: str, concurrency: Any) -> httpx.Response:
        return self.request(
            "PUT", f"/workers/{hostname}/concurrency", json={"concurrency": concurrency}
        )

    def reset_concurrency(self, hostname: str) -> httpx.Response:
        return self.request("DELETE", f"/workers/{hostname}/concurrency")

    def wait_for_worker(self, hostname: str, predicate, timeout: float = 30.0, message: str = ""):
        """Poll the worker's view until ``predicate(view)`` holds; returns that view."""

        def check() -> dict[str, Any] | None:
            view = self.find_worker(hostname)
            return view if view is not None and predicate(view) else None

        return wait_until(
            check,
            timeout=timeout,
            message=lambda: f"{message or 'worker condition'}; now: {self.find_worker(hostname)}",
        )

    def wait_applied(
        self, hostname: str, concurrency: int, timeout: float = 30.0, pid: int | None = None
    ) -> dict[str, Any]:
        """Wait until the worker acknowledged the current desired state with ``concurrency``.

        Returns the view; its ``applied_at`` is the server time of the acknowledgement.
        """

        def applied(view: dict[str, Any]) -> bool:
            return (
                view["applied_concurrency"] == concurrency
                and view["applied_version"] == view["desired_version"]
                and (pid is None or view["pid"] == pid)
            )

        return self.wait_for_worker(
            hostname, applied, timeout, f"{hostname} to apply concurrency {concurrency}"
        )

    # --- jobs ----------------------------------------------------------------------

    def submit(self, command: list[str], queue: str = "default", priority: int = 0) -> int:
        body = {"command": command, "queue": queue, "priority": priority}
        return self.call("POST", "/jobs", expect=201, json=body)["id"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self.call("GET", f"/jobs/{job_id}")

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"limit": 10000, **({"state": state} if state else {})}
        return self.call("GET", "/jobs", params=params)

    def job_log(self, job_id: int) -> str:
        return self.call("GET", f"/jobs/{job_id}/logs")["log"]

    def wait_for_jobs(self, ids: list[int], timeout: float = 60.0) -> dict[int, dict[str, Any]]:
        """Wait until every job in ``ids`` has finished; returns their views by id."""
        wanted = set(ids)

        def finished() -> dict[int, dict[str, Any]] | None:
            views = {j["id"]: j for j in self.jobs() if j["id"] in wanted}
            done = len(views) == len(wanted) and all(v["state"] in FINISHED for v in views.values())
            return views if done else None

        def pending() -> str:
            views = [j for j in self.jobs() if j["id"] in wanted and j["state"] not in FINISHED]
            return f"jobs still unfinished: {[(j['id'], j['state']) for j in views]}"

        return wait_until(finished, timeout=timeout, interval=0.1, message=pending)
