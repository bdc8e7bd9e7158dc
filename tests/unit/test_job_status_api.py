"""``POST /api/v1/jobs/status``: many jobs by id and/or key in one request, and the ``key``
a submitter stores on a job (TestClient on create_app with a migrated database)."""

from __future__ import annotations

import pytest

from support import admin_token, auth_header

JOBS = "/api/v1/jobs"


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


def submit(app_client, admin, **fields) -> int:
    response = app_client.post(JOBS, json={"command": ["true"], **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_status_finds_jobs_by_id_and_by_key_in_one_request(app_client, admin):
    plain = submit(app_client, admin)
    keyed = submit(app_client, admin, key="airflow:ti-1:1", queue="site-b")
    twice = [submit(app_client, admin, key="shared") for _ in range(2)]
    submit(app_client, admin, key="not-asked")

    body = {"ids": [plain, 999999], "keys": ["airflow:ti-1:1", "shared", "unknown"]}
    response = app_client.post(f"{JOBS}/status", json=body, headers=admin)
    assert response.status_code == 200, response.text
    found = response.json()
    assert [s["id"] for s in found] == [plain, keyed, *twice]
    by_id = {s["id"]: s for s in found}
    assert by_id[keyed] | {"id": 0} == {
        "id": 0,
        "key": "airflow:ti-1:1",
        "queue": "site-b",
        "state": "queued",
        "attempt": 0,
        "worker": None,
        "exit_code": None,
        "reason": None,
        "cancel_requested": False,
    }
    assert by_id[plain]["key"] is None
    assert app_client.get(f"{JOBS}/{keyed}", headers=admin).json()["key"] == "airflow:ti-1:1"


@pytest.mark.parametrize(
    "body",
    [
        {"ids": list(range(1, 10002))},
        {"ids": list(range(1, 5002)), "keys": [f"k{i}" for i in range(5000)]},
        {"keys": [""]},
        {"keys": ["a\nb"]},
        {"ids": [0]},
        {"names": ["x"]},
    ],
)
def test_status_refuses_bad_lookups(app_client, admin, body):
    response = app_client.post(f"{JOBS}/status", json=body, headers=admin)
    assert response.status_code == 422, response.text


def test_a_bad_key_refuses_the_submit(app_client, admin):
    response = app_client.post(JOBS, json={"command": ["true"], "key": "x" * 256}, headers=admin)
    assert response.status_code == 422
    assert app_client.post(f"{JOBS}/status", json={}, headers=admin).json() == []
