"""Operator tokens, join tokens, worker credentials and revocation, in-process."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import select

from edgefleet.db.models import Credential, JoinToken
from support import admin_token, auth_header, worker_token

EDGE = "/api/v1/edge"


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def issue(app_client, admin):
    def issue(name: str, role: str) -> dict[str, str]:
        response = app_client.post(
            "/api/v1/tokens", json={"name": name, "role": role}, headers=admin
        )
        assert response.status_code == 201, response.text
        return auth_header(response.json()["token"])

    return issue


@pytest.fixture
def join(app_client, admin):
    def join(uses: int = 1, labels: dict | None = None, ttl: int = 3600) -> str:
        body = {"uses": uses, "labels": labels or {}, "ttl_seconds": ttl}
        response = app_client.post("/api/v1/tokens/join", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return response.json()["token"]

    return join


def enroll(app_client, join_token: str, hostname: str):
    return app_client.post(
        f"{EDGE}/enroll", json={"hostname": hostname}, headers=auth_header(join_token)
    )


def register(app_client, hostname: str, headers: dict, labels: dict | None = None):
    body = {
        "instance_id": uuid.uuid4().hex,
        "concurrency": 2,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
        "labels": labels or {},
    }
    return app_client.post(f"{EDGE}/workers/{hostname}/register", json=body, headers=headers)


def test_roles_decide_what_a_token_may_do(app_client, admin, issue):
    viewer, operator = issue("grafana", "viewer"), issue("oncall", "operator")
    other_admin = issue("lead", "admin")
    for headers in (viewer, operator, other_admin):
        assert app_client.get("/api/v1/workers", headers=headers).status_code == 200
    submit = {"command": ["true"]}
    assert app_client.post("/api/v1/jobs", json=submit, headers=viewer).status_code == 403
    assert app_client.post("/api/v1/jobs", json=submit, headers=operator).status_code == 201
    body = {"name": "x", "role": "viewer"}
    assert app_client.post("/api/v1/tokens", json=body, headers=operator).status_code == 403
    assert app_client.post("/api/v1/tokens", json=body, headers=other_admin).status_code == 201
    who = app_client.get("/api/v1/whoami", headers=operator).json()
    assert who == {"name": "oncall", "role": "operator", "source": "token"}


def test_the_server_keeps_only_a_hash_and_lists_no_secret(app_client, admin, session_factory):
    response = app_client.post(
        "/api/v1/tokens", json={"name": "ci", "role": "operator"}, headers=admin
    )
    token = response.json()["token"]
    assert token.startswith("efo_")
    listed = app_client.get("/api/v1/tokens", headers=admin)
    assert token not in listed.text
    assert [t["name"] for t in listed.json()] == ["ci"]
    with session_factory() as session:
        stored = session.scalars(select(Credential.token_hash)).all()
    assert token not in stored and len(stored) == 1


def test_a_name_is_taken_until_its_token_is_revoked(app_client, admin, issue):
    operator = issue("ops", "operator")
    again = app_client.post("/api/v1/tokens", json={"name": "ops", "role": "admin"}, headers=admin)
    assert again.status_code == 409
    assert app_client.delete("/api/v1/tokens/ops", headers=admin).status_code == 204
    refused = app_client.get("/api/v1/workers", headers=operator)
    assert refused.status_code == 401, refused.text
    assert app_client.delete("/api/v1/tokens/ops", headers=admin).status_code == 404
    issue("ops", "viewer")


def test_the_audit_log_names_the_token_not_the_caller(app_client, admin, issue, join):
    operator = issue("night-shift", "operator")
    credential = enroll(app_client, join(), "w1").json()["credential"]
    assert register(app_client, "w1", auth_header(credential)).status_code == 200
    body = {"edge_hostname": "w1", "concurrency": 3}
    response = app_client.post(
        "/api/v1/workers/actions/set-concurrency", json=body, headers=operator
    )
    assert response.status_code == 200, response.text
    entries = app_client.get("/api/v1/audit?edge_hostname=w1", headers=operator).json()
    assert entries[0]["actor"] == "night-shift"  # the newest entry


def test_enrollment_binds_a_credential_to_one_hostname(app_client, admin, join):
    token = join(labels={"site": "plant1"})
    response = enroll(app_client, token, "edge-1")
    assert response.status_code == 201, response.text
    credential = auth_header(response.json()["credential"])
    assert response.json()["credential"].startswith("efw_")

    registered = register(app_client, "edge-1", credential, labels={"site": "fake", "rack": "3"})
    assert registered.status_code == 200, registered.text
    (view,) = app_client.get("/api/v1/workers", headers=admin).json()
    assert view["labels"] == {"site": "plant1", "rack": "3"}  # the join token's label wins

    # Another hostname, and every operator route, are closed to it.
    assert register(app_client, "edge-2", credential).status_code == 403
    assert app_client.get("/api/v1/workers", headers=credential).status_code == 403
    submit = {"command": ["true"]}
    assert app_client.post("/api/v1/jobs", json=submit, headers=credential).status_code == 403


def test_a_used_up_expired_or_unknown_join_token_is_refused(app_client, join, session_factory):
    token = join(uses=1)
    assert enroll(app_client, token, "a").status_code == 201
    used = enroll(app_client, token, "b")
    assert used.status_code == 401
    assert "used up" in used.json()["detail"]

    expired = join(uses=5)
    with session_factory.begin() as session:
        row = session.scalars(select(JoinToken).order_by(JoinToken.id.desc())).first()
        row.expires_at = row.created_at
    response = enroll(app_client, expired, "c")
    assert response.status_code == 401 and "expired" in response.json()["detail"]

    assert enroll(app_client, "efj_" + "x" * 43, "d").status_code == 401
    assert enroll(app_client, "", "d").status_code == 401
    # A join token is good for nothing else.
    assert app_client.get("/api/v1/workers", headers=auth_header(token)).status_code == 401


def test_an_enrolled_hostname_cannot_be_taken_over(app_client, join):
    token = join(uses=2)
    assert enroll(app_client, token, "site-a").status_code == 201
    again = enroll(app_client, token, "site-a")
    assert again.status_code == 409
    assert "enrolled already" in again.json()["detail"]


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize("hostname", ["*", "a*", "x[1]", "a/b", "a b", "a\x01", "h" * 300])
def test_bad_hostnames_are_refused_everywhere(app_client, app_settings, admin, join, hostname):
    assert enroll(app_client, join(), hostname).status_code == 422
    worker = auth_header(worker_token(app_settings.secret, "w1"))
    quoted = quote(hostname, safe="")
    path = f"{EDGE}/workers/{quoted}/register"
    assert app_client.post(path, json={}, headers=worker).status_code in (404, 422)
    path = f"/api/v1/workers/{quoted}/concurrency"
    response = app_client.put(path, json={"concurrency": 2}, headers=admin)
    assert response.status_code in (404, 422), response.text


def test_revocation_kills_the_credential_and_loses_the_jobs(app_client, admin, join):
    credential = auth_header(enroll(app_client, join(), "w1").json()["credential"])
    assert register(app_client, "w1", credential).status_code == 200
    job = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    instance_id = _instance(app_client, admin, "w1")
    fetched = app_client.post(
        f"{EDGE}/workers/w1/fetch",
        json={"instance_id": instance_id, "free_slots": 1, "seq": 1},
        headers=credential,
    )
    assert [j["id"] for j in fetched.json()["jobs"]] == [job]

    response = app_client.post(
        "/api/v1/workers/actions/revoke", json={"edge_hostname": "w1"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["changes"][0]["field"] == "revoked"

    beat = {
        "instance_id": instance_id,
        "state": "running",
        "applied_version": 1,
        "applied_concurrency": 2,
    }
    refused = app_client.post(f"{EDGE}/workers/w1/heartbeat", json=beat, headers=credential)
    assert refused.status_code == 401
    (view,) = app_client.get("/api/v1/workers", headers=admin).json()
    assert view["state"] == "revoked"
    detail = app_client.get(f"/api/v1/jobs/{job}", headers=admin).json()
    assert detail["state"] in ("queued", "failed")
    assert "revoked" in detail["history"][-1]["reason"]
    audit = app_client.get("/api/v1/audit?edge_hostname=w1", headers=admin).json()
    assert audit[0]["field"] == "revoked"  # the newest entry


def test_a_revoked_worker_comes_back_only_with_a_new_join_token(app_client, admin, join):
    token = join(uses=2)
    credential = auth_header(enroll(app_client, token, "w1").json()["credential"])
    assert register(app_client, "w1", credential).status_code == 200
    body = {"edge_hostname": "w1"}
    assert app_client.post("/api/v1/workers/actions/revoke", json=body, headers=admin).is_success
    # Even the secret's worker token is refused for a revoked worker.
    legacy = auth_header(worker_token(app_client.app.state.context.secret, "w1"))
    assert register(app_client, "w1", legacy).status_code == 401
    fresh = auth_header(enroll(app_client, token, "w1").json()["credential"])
    assert register(app_client, "w1", fresh).status_code == 200
    (view,) = app_client.get("/api/v1/workers", headers=admin).json()
    assert view["state"] != "revoked"


def test_a_worker_rotates_its_own_credential(app_client, join):
    old = auth_header(enroll(app_client, join(), "w1").json()["credential"])
    response = app_client.post(f"{EDGE}/workers/w1/credential", headers=old)
    assert response.status_code == 201, response.text
    new = auth_header(response.json()["credential"])
    assert new != old
    assert register(app_client, "w1", new).status_code == 200
    # The old one keeps working for a short grace, and cannot rotate for another worker.
    assert app_client.post(f"{EDGE}/workers/w2/credential", headers=old).status_code == 403


def _instance(app_client, admin, hostname: str) -> str:
    (view,) = [
        w
        for w in app_client.get("/api/v1/workers", headers=admin).json()
        if w["hostname"] == hostname
    ]
    return view["instance_id"]
