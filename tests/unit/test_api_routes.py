"""The API routes in-process (TestClient on create_app with a migrated database file)."""

from __future__ import annotations

import uuid

import pytest

from edgefleet.settings import MAX_CONCURRENCY
from support import admin_token, auth_header, worker_token


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def as_worker(app_settings):
    def headers(hostname: str) -> dict[str, str]:
        return auth_header(worker_token(app_settings.secret, hostname))

    return headers


@pytest.fixture
def register(app_client, as_worker):
    """Register a worker over the API; returns its instance id."""

    def register(hostname: str, concurrency: int = 2, queues=("default",)) -> str:
        instance_id = uuid.uuid4().hex
        body = {
            "instance_id": instance_id,
            "concurrency": concurrency,
            "queues": list(queues),
            "heartbeat_interval": 1.0,
            "pid": 4242,
        }
        response = app_client.post(
            f"/api/v1/edge/workers/{hostname}/register", json=body, headers=as_worker(hostname)
        )
        assert response.status_code == 200, response.text
        desired = response.json()["desired"]
        assert (desired["concurrency"], desired["concurrency_source"]) == (concurrency, "flag")
        return instance_id

    return register


def _view(app_client, admin, hostname: str) -> dict:
    (view,) = [
        w
        for w in app_client.get("/api/v1/workers", headers=admin).json()
        if w["hostname"] == hostname
    ]
    return view


def _submit(app_client, admin, count: int, queue: str = "default") -> list[int]:
    ids = []
    for _ in range(count):
        response = app_client.post(
            "/api/v1/jobs", json={"command": ["true"], "queue": queue}, headers=admin
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _fetch(app_client, as_worker, hostname, instance_id, free_slots) -> list[dict]:
    response = app_client.post(
        f"/api/v1/edge/workers/{hostname}/fetch",
        json={"instance_id": instance_id, "free_slots": free_slots},
        headers=as_worker(hostname),
    )
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


@pytest.mark.same_on_every_backend  # authentication
def test_health_needs_no_token(app_client):
    response = app_client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.same_on_every_backend  # authentication
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/workers"),
        ("PUT", "/api/v1/workers/w/concurrency"),
        ("DELETE", "/api/v1/workers/w/concurrency"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/1"),
        ("GET", "/api/v1/jobs/1/logs"),
        ("POST", "/api/v1/edge/workers/w/heartbeat"),
        ("POST", "/api/v1/edge/workers/w/fetch"),
        ("POST", "/api/v1/edge/jobs/1/result"),
        ("POST", "/api/v1/edge/workers/w/results"),
    ],
)
def test_every_route_but_health_needs_a_token(app_client, method, path):
    response = app_client.request(method, path, json={})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


@pytest.mark.same_on_every_backend  # roles
def test_wrong_role_is_forbidden(app_client, admin, as_worker):
    assert app_client.get("/api/v1/workers", headers=as_worker("w")).status_code == 403
    response = app_client.post(
        "/api/v1/edge/workers/w/fetch", json={"instance_id": "x", "free_slots": 1}, headers=admin
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_unknown_worker_and_job_are_404(app_client, admin):
    for method, path, body in [
        ("PUT", "/api/v1/workers/ghost/concurrency", {"concurrency": 2}),
        ("DELETE", "/api/v1/workers/ghost/concurrency", None),
        ("GET", "/api/v1/jobs/12345", None),
        ("GET", "/api/v1/jobs/12345/logs", None),
    ]:
        response = app_client.request(method, path, json=body, headers=admin)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "not_found"
    assert app_client.get("/api/v1/workers", headers=admin).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"concurrency": 0},
        {"concurrency": -5},
        {"concurrency": "abc"},
        {"concurrency": 2.5},
        {"concurrency": "3"},
        {"concurrency": MAX_CONCURRENCY + 1},
        {},
        {"concurrency": 3, "extra": True},
    ],
)
def test_bad_concurrency_body_is_422_and_changes_nothing(app_client, admin, register, body):
    register("w1", concurrency=2)
    before = _view(app_client, admin, "w1")
    response = app_client.put("/api/v1/workers/w1/concurrency", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    after = _view(app_client, admin, "w1")
    for field in ("concurrency", "concurrency_source", "desired_version", "applied_version"):
        assert after[field] == before[field], field


@pytest.mark.same_on_every_backend  # the body's parsing
def test_malformed_json_is_422(app_client, admin, register):
    register("w1")
    response = app_client.put(
        "/api/v1/workers/w1/concurrency",
        content=b'{"concurrency": ',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_set_and_reset_concurrency(app_client, admin, register):
    register("w1", concurrency=2)
    before = _view(app_client, admin, "w1")

    assert (
        app_client.put(
            "/api/v1/workers/w1/concurrency", json={"concurrency": 6}, headers=admin
        ).status_code
        == 200
    )
    view = _view(app_client, admin, "w1")
    assert (view["concurrency"], view["concurrency_source"], view["flag_concurrency"]) == (
        6,
        "operator",
        2,
    )
    assert view["desired_version"] > before["desired_version"]
    assert not view["converged"]

    assert app_client.delete("/api/v1/workers/w1/concurrency", headers=admin).status_code == 200
    reset = _view(app_client, admin, "w1")
    assert (reset["concurrency"], reset["concurrency_source"]) == (2, "flag")
    assert reset["desired_version"] > view["desired_version"]


def test_heartbeat_acknowledges_and_checks_the_instance(app_client, admin, as_worker, register):
    instance_id = register("w1", concurrency=2)
    desired_version = _view(app_client, admin, "w1")["desired_version"]
    beat = {
        "instance_id": instance_id,
        "state": "idle",
        "running_jobs": [],
        "applied_version": desired_version,
        "applied_concurrency": 2,
    }
    url = "/api/v1/edge/workers/w1/heartbeat"
    response = app_client.post(url, json=beat, headers=as_worker("w1"))
    assert response.status_code == 200, response.text
    assert response.json()["desired"]["version"] == desired_version
    view = _view(app_client, admin, "w1")
    assert (view["applied_version"], view["applied_concurrency"], view["converged"]) == (
        desired_version,
        2,
        True,
    )

    stale = app_client.post(url, json={**beat, "instance_id": "0" * 32}, headers=as_worker("w1"))
    assert stale.status_code == 409
    assert stale.json()["error"] == "conflict"

    for bad in ({**beat, "applied_concurrency": 0}, {**beat, "extra": 1}, {**beat, "state": "x"}):
        assert app_client.post(url, json=bad, headers=as_worker("w1")).status_code == 422
    assert app_client.post(url, json=beat, headers=as_worker("w2")).status_code == 403


def test_fetch_hands_out_no_more_than_the_central_concurrency(
    app_client, admin, as_worker, register
):
    instance_id = register("w1", concurrency=2)
    _submit(app_client, admin, 6)

    assert len(_fetch(app_client, as_worker, "w1", instance_id, 6)) == 2
    assert _fetch(app_client, as_worker, "w1", instance_id, 6) == []

    assert (
        app_client.put(
            "/api/v1/workers/w1/concurrency", json={"concurrency": 3}, headers=admin
        ).status_code
        == 200
    )
    third = _fetch(app_client, as_worker, "w1", instance_id, 6)
    assert len(third) == 1
    assert _fetch(app_client, as_worker, "w1", instance_id, 6) == []

    running = [
        j for j in app_client.get("/api/v1/jobs", headers=admin).json() if j["state"] == "running"
    ]
    assert len(running) == 3 and {j["worker"] for j in running} == {"w1"}


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize("free_slots", [0, -1, "1", MAX_CONCURRENCY + 1])
def test_fetch_validates_free_slots(app_client, as_worker, register, free_slots):
    instance_id = register("w1")
    response = app_client.post(
        "/api/v1/edge/workers/w1/fetch",
        json={"instance_id": instance_id, "free_slots": free_slots},
        headers=as_worker("w1"),
    )
    assert response.status_code == 422


def test_release_puts_a_claimed_job_back(app_client, admin, as_worker, register):
    instance_id = register("w1", concurrency=1)
    (job_id,) = _submit(app_client, admin, 1)
    (assignment,) = _fetch(app_client, as_worker, "w1", instance_id, 1)
    assert (assignment["id"], assignment["attempt"]) == (job_id, 1)

    response = app_client.post(
        f"/api/v1/edge/jobs/{job_id}/release",
        json={"instance_id": instance_id, "attempt": 1},
        headers=as_worker("w1"),
    )
    assert response.status_code == 204, response.text
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()
    assert (job["state"], job["worker"], job["attempt"]) == ("queued", None, 0)

    (again,) = _fetch(app_client, as_worker, "w1", instance_id, 1)
    assert (again["id"], again["attempt"]) == (job_id, 1)


def test_results_are_accepted_only_from_the_holder(app_client, admin, as_worker, register):
    a = register("wa", concurrency=1)
    b = register("wb", concurrency=1)
    (job_id,) = _submit(app_client, admin, 1)
    assert [j["id"] for j in _fetch(app_client, as_worker, "wa", a, 1)] == [job_id]

    result = {"instance_id": b, "attempt": 1, "state": "success", "exit_code": 0}
    url = f"/api/v1/edge/jobs/{job_id}/result"
    response = app_client.post(url, json=result, headers=as_worker("wb"))
    assert response.status_code == 403, response.text  # another worker's job
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()
    assert (job["state"], job["worker"]) == ("running", "wa")

    # The holder reports; a repeat of the same report is harmless, a different one refused.
    mine = {**result, "instance_id": a}
    assert app_client.post(url, json=mine, headers=as_worker("wa")).status_code == 204
    assert app_client.post(url, json=mine, headers=as_worker("wa")).status_code == 204
    different = {**mine, "state": "failed", "exit_code": 1}
    assert app_client.post(url, json=different, headers=as_worker("wa")).status_code == 409
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()
    assert (job["state"], job["exit_code"]) == ("success", 0)
