"""The job routes in-process: request validation, error bodies, cancel, logs and the
worker's view of cancel orders (TestClient on create_app with a migrated database)."""

from __future__ import annotations

import uuid

import pytest

from support import admin_token, auth_header, worker_token

EDGE = "/api/v1/edge"


@pytest.fixture
def app_settings(app_settings):
    return app_settings.model_copy(update={"job_log_max_bytes": 2048})


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def worker(app_client, app_settings):
    """Register worker w1 over the API; returns (headers, instance id)."""
    headers = auth_header(worker_token(app_settings.secret, "w1"))
    instance = uuid.uuid4().hex
    body = {
        "instance_id": instance,
        "concurrency": 4,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
    }
    response = app_client.post(f"{EDGE}/workers/w1/register", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return headers, instance


def fetch(app_client, worker, seq: int) -> list[dict]:
    headers, instance = worker
    body = {"instance_id": instance, "free_slots": 4, "seq": seq}
    response = app_client.post(f"{EDGE}/workers/w1/fetch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("env", {"1BAD": "x"}),
        ("env", {"OK": "nul\x00byte"}),
        ("cwd", "relative/dir"),
        ("timeout", 0),
        ("retries", -1),
        ("retries", 101),
        ("slots", 0),
        ("retry_delay", -1),
        ("command", ["echo", "nul\x00"]),
    ],
)
def test_bad_job_options_are_refused_and_nothing_is_queued(app_client, admin, field, value):
    response = app_client.post(
        "/api/v1/jobs", json={"command": ["true"], field: value}, headers=admin
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert app_client.get("/api/v1/jobs", headers=admin).json() == []


def test_options_reach_the_worker(app_client, admin, worker):
    body = {
        "command": ["env"],
        "env": {"GREETING": "hello"},
        "cwd": "/tmp",
        "timeout": 12.5,
        "slots": 2,
        "retries": 3,
        "retry_delay": 0.5,
    }
    job_id = app_client.post("/api/v1/jobs", json=body, headers=admin).json()["id"]
    (assignment,) = fetch(app_client, worker, 1)
    assert assignment["id"] == job_id
    assert (assignment["env"], assignment["cwd"], assignment["timeout"]) == (
        {"GREETING": "hello"},
        "/tmp",
        12.5,
    )
    assert assignment["slots"] == 2
    shown = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()
    assert (shown["max_attempts"], shown["retry_delay"], shown["state"]) == (4, 0.5, "running")
    assert [e["event"] for e in shown["history"]] == ["submitted", "started"]
    assert shown["history"][0]["actor"] == "test-admin"


def test_cancel_over_the_api_reaches_the_workers_long_poll_and_heartbeat(app_client, admin, worker):
    headers, instance = worker
    job_id = app_client.post(
        "/api/v1/jobs", json={"command": ["sleep", "60"]}, headers=admin
    ).json()["id"]
    fetch(app_client, worker, 1)
    response = app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin)
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["cancel_requested"]) == ("running", True)

    params = {"instance_id": instance, "version": 0, "timeout": 5}
    watched = app_client.get(f"{EDGE}/workers/w1/watch", params=params, headers=headers).json()
    assert [c["id"] for c in watched["cancel"]] == [job_id]
    beat = {
        "instance_id": instance,
        "state": "running",
        "running_jobs": [job_id],
        "applied_version": 1,
        "applied_concurrency": 4,
    }
    answer = app_client.post(f"{EDGE}/workers/w1/heartbeat", json=beat, headers=headers).json()
    assert [(c["id"], c["attempt"], c["requested"]) for c in answer["cancel"]] == [
        (job_id, 1, True)
    ]
    report = {"instance_id": instance, "attempt": 1, "state": "cancelled", "exit_code": -15}
    for _ in range(2):  # a repeated report changes nothing
        response = app_client.post(f"{EDGE}/jobs/{job_id}/result", json=report, headers=headers)
        assert response.status_code == 204, response.text
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["state"] == "cancelled"
    again = app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin)
    assert again.status_code == 200 and again.json()["state"] == "cancelled"


def test_cancel_errors(app_client, admin, worker):
    missing = app_client.post("/api/v1/jobs/98765/cancel", headers=admin)
    assert missing.status_code == 404 and "98765" in missing.json()["detail"]
    headers, instance = worker
    job_id = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    fetch(app_client, worker, 1)
    report = {"instance_id": instance, "attempt": 1, "state": "success", "exit_code": 0}
    app_client.post(f"{EDGE}/jobs/{job_id}/result", json=report, headers=headers)
    done = app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin)
    assert done.status_code == 409
    assert done.json() == {
        "error": "conflict",
        "detail": f"job {job_id} already ended as success; nothing to cancel",
    }


def test_a_late_result_is_a_409_with_a_reason(app_client, admin, worker):
    headers, instance = worker
    job_id = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    fetch(app_client, worker, 1)
    release = {"instance_id": instance, "attempt": 1, "seq": 1}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/release", json=release, headers=headers)
    assert response.status_code == 204, response.text
    report = {"instance_id": instance, "attempt": 1, "state": "success", "exit_code": 0}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/result", json=report, headers=headers)
    assert response.status_code == 409
    assert "no longer held" in response.json()["detail"]
    history = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["history"]
    assert history[-1]["event"] == "late_result_refused"
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["state"] == "queued"


def test_a_job_the_worker_never_held_is_403(app_client, admin, worker):
    headers, instance = worker
    job_id = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    report = {"instance_id": instance, "attempt": 1, "state": "success", "exit_code": 0}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/result", json=report, headers=headers)
    assert response.status_code == 403, response.text
    chunk = {"attempt": 1, "seq": 0, "data": "forged"}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/logs", json=chunk, headers=headers)
    assert response.status_code == 403, response.text
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["state"] == "queued"


def test_the_log_cap_answers_413_with_a_clear_error(app_client, admin, worker):
    headers, _ = worker
    job_id = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    fetch(app_client, worker, 1)
    ok = {"attempt": 1, "seq": 0, "data": "x" * 2000}
    assert (
        app_client.post(f"{EDGE}/jobs/{job_id}/logs", json=ok, headers=headers).status_code == 204
    )
    over = {"attempt": 1, "seq": 1, "data": "y" * 100}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/logs", json=over, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "limit of 2048 bytes" in response.json()["detail"]
    logs = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=admin).json()
    assert logs["log"].count("log truncated") == 1
    bad = app_client.get(f"/api/v1/jobs/{job_id}/logs", params={"cursor": "x"}, headers=admin)
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


def test_a_chunk_over_the_wire_limit_is_a_422(app_client, admin, worker):
    headers, _ = worker
    job_id = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    fetch(app_client, worker, 1)
    huge = {"attempt": 1, "seq": 0, "data": "z" * (512 * 1024 + 1)}
    response = app_client.post(f"{EDGE}/jobs/{job_id}/logs", json=huge, headers=headers)
    assert response.status_code == 422


def test_list_filters_by_state_and_queue(app_client, admin):
    for queue in ("a", "b", "b"):
        app_client.post("/api/v1/jobs", json={"command": ["true"], "queue": queue}, headers=admin)
    listed = app_client.get(
        "/api/v1/jobs", params={"queue": "b", "state": "queued"}, headers=admin
    ).json()
    assert [j["queue"] for j in listed] == ["b", "b"]
    assert all(j["waiting_reason"] == "no live worker serves queue 'b'" for j in listed)
    bad = app_client.get("/api/v1/jobs", params={"state": "nope"}, headers=admin)
    assert bad.status_code == 422


def test_a_batch_is_queued_whole_in_order(app_client, admin):
    batch = {"jobs": [{"command": ["true"]}, {"command": ["echo", "2"], "queue": "other"}]}
    response = app_client.post("/api/v1/jobs/batch", json=batch, headers=admin)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert len(ids) == 2 and ids == sorted(ids)
    shown = [app_client.get(f"/api/v1/jobs/{i}", headers=admin).json() for i in ids]
    assert [(job["command"], job["queue"], job["state"]) for job in shown] == [
        (["true"], "default", "queued"),
        (["echo", "2"], "other", "queued"),
    ]
    assert [e["event"] for e in shown[1]["history"]] == ["submitted"]
    assert shown[1]["history"][0]["actor"] == "test-admin"


@pytest.mark.parametrize(
    "batch",
    [
        {"jobs": []},
        {"jobs": [{"command": ["true"]}, {"command": ["true"], "slots": 0}]},
        {"jobs": [{"command": ["true"]}] * 1001},
        {"jobs": [{"command": ["true"]}], "extra": 1},
    ],
    ids=["empty", "one-bad-job", "too-many", "unknown-field"],
)
def test_a_bad_batch_queues_nothing(app_client, admin, batch):
    response = app_client.post("/api/v1/jobs/batch", json=batch, headers=admin)
    assert response.status_code == 422, response.text
    assert app_client.get("/api/v1/jobs", headers=admin).json() == []


def submit_jobs(app_client, admin, count: int, **options) -> list[int]:
    body = {"jobs": [{"command": ["true"], **options} for _ in range(count)]}
    response = app_client.post("/api/v1/jobs/batch", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def report(app_client, worker, results: list[dict], hostname: str = "w1"):
    headers, instance = worker
    body = {"results": [{"instance_id": instance, **r} for r in results]}
    return app_client.post(f"{EDGE}/workers/{hostname}/results", json=body, headers=headers)


def test_a_batch_of_results_is_judged_one_by_one(app_client, admin, worker):
    ok, retried, failed = submit_jobs(app_client, admin, 3, retries=1)
    assert len(fetch(app_client, worker, 1)) == 3
    response = report(
        app_client,
        worker,
        [
            {"job_id": ok, "attempt": 1, "state": "success", "exit_code": 0},
            {"job_id": retried, "attempt": 1, "state": "failed", "exit_code": 3},
            {"job_id": 999, "attempt": 1, "state": "success", "exit_code": 0},
            {"job_id": failed, "attempt": 2, "state": "success", "exit_code": 0},
            {"job_id": ok, "attempt": 1, "state": "success", "exit_code": 0},  # a repeat
            {"job_id": failed, "attempt": 1, "state": "running"},
        ],
    )
    assert response.status_code == 200, response.text
    outcomes = [(o["job_id"], o["status_code"], o["error"]) for o in response.json()["outcomes"]]
    assert outcomes == [
        (ok, 204, None),
        (retried, 204, None),
        (999, 404, "not_found"),
        (failed, 409, "conflict"),
        (ok, 204, None),
        (failed, 400, "invalid_request"),
    ]
    states = {
        job: app_client.get(f"/api/v1/jobs/{job}", headers=admin).json()["state"]
        for job in (ok, retried, failed)
    }
    assert states == {ok: "success", retried: "queued", failed: "running"}


def test_a_worker_reports_results_only_as_itself(app_client, admin, worker):
    (job,) = submit_jobs(app_client, admin, 1)
    fetch(app_client, worker, 1)
    result = {"job_id": job, "attempt": 1, "state": "success", "exit_code": 0}
    assert report(app_client, worker, [result], hostname="w2").status_code == 403
    assert report(app_client, worker, []).status_code == 422
    too_many = [dict(result, job_id=n) for n in range(1001)]
    assert report(app_client, worker, too_many).status_code == 422
    job_state = app_client.get(f"/api/v1/jobs/{job}", headers=admin).json()["state"]
    assert job_state == "running"
