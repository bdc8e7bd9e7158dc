"""Secret job env: sealed in the database, shown by name only, opened only for the worker
that claims the job; a job whose values cannot be opened fails instead of running."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from edgefleet.contract import JobAssignment, JobSubmit, Registration
from edgefleet.db.models import Job
from edgefleet.server.secret_env import UNREADABLE, EnvSealer, SecretEnvUnreadable
from edgefleet.server.services import dispatch, jobs, workers
from support import admin_token, auth_header, worker_token

EDGE = "/api/v1/edge"
VALUE = "hunter2-the-value-nobody-may-read"
SECRET_A = "a" * 40
SECRET_B = "b" * 40


def test_sealed_values_open_only_with_the_same_signing_secret():
    sealed = EnvSealer(SECRET_A).seal({"TOKEN": VALUE, "EMPTY": ""})
    assert set(sealed) == {"TOKEN", "EMPTY"}
    assert VALUE not in repr(sealed)
    assert EnvSealer(SECRET_A).open(sealed) == {"TOKEN": VALUE, "EMPTY": ""}
    with pytest.raises(SecretEnvUnreadable, match="signing secret changed"):
        EnvSealer(SECRET_B).open(sealed)
    with pytest.raises(SecretEnvUnreadable):
        EnvSealer(SECRET_A).open({"TOKEN": VALUE})  # stored in clear by someone else


def test_a_name_in_both_maps_is_refused_and_values_stay_out_of_reprs():
    with pytest.raises(ValidationError, match="both name K"):
        JobSubmit(command=["true"], env={"K": "1"}, secret_env={"K": "2"})
    with pytest.raises(ValidationError):
        JobSubmit(command=["true"], secret_env={"1BAD": "x"})
    with pytest.raises(ValidationError):
        JobSubmit(command=["true"], secret_env={f"K{i}": "x" for i in range(257)})
    assert VALUE not in repr(JobSubmit(command=["true"], secret_env={"K": VALUE}))
    assignment = JobAssignment(id=1, attempt=1, command=["x"], queue="q", slots=1, env={"K": VALUE})
    assert VALUE not in repr(assignment)


def _register(db, hostname: str = "w1") -> str:
    instance = uuid.uuid4().hex
    registration = Registration(
        instance_id=instance, concurrency=4, queues=["default"], heartbeat_interval=1.0
    )
    workers.register(db, hostname, registration, 5.0)
    return instance


def test_the_database_holds_the_values_sealed_and_the_claim_opens_them(session_factory):
    db, sealer = session_factory, EnvSealer(SECRET_A)
    job_id = jobs.submit(
        db, JobSubmit(command=["env"], env={"PLAIN": "p"}, secret_env={"TOKEN": VALUE}), "t", sealer
    )
    with db() as session:
        stored = session.scalar(select(Job.secret_env).where(Job.id == job_id))
        raw = session.execute(text("SELECT secret_env FROM edge_job")).scalar()
    assert set(stored) == {"TOKEN"} and VALUE not in str(raw)

    view = jobs.get_job(db, job_id)
    assert (view.env, view.secret_env_keys) == ({"PLAIN": "p"}, ["TOKEN"])
    assert VALUE not in view.model_dump_json()
    assert VALUE not in jobs.list_jobs(db, None, 10, 0)[0].model_dump_json()

    instance = _register(db)
    (assignment,) = dispatch.claim(db, "w1", instance, 4, seq=1, sealer=sealer)[0]
    assert assignment.env == {"PLAIN": "p", "TOKEN": VALUE}
    (again,) = dispatch.claim(db, "w1", instance, 4, seq=1, sealer=sealer)[0]  # a lost answer
    assert again.env == assignment.env


def test_a_job_sealed_under_an_old_secret_fails_instead_of_running(session_factory):
    db = session_factory
    sealed = JobSubmit(command=["true"], secret_env={"TOKEN": VALUE}, retries=3)
    old = jobs.submit(db, sealed, "t", EnvSealer(SECRET_A))
    fine = jobs.submit(db, JobSubmit(command=["true"]), "t")
    instance = _register(db)
    claimed, _ = dispatch.claim(db, "w1", instance, 4, seq=1, sealer=EnvSealer(SECRET_B))
    assert [a.id for a in claimed] == [fine]
    failed = jobs.get_job(db, old)
    assert (failed.state, failed.reason, failed.finished_at is not None) == (
        "failed",
        UNREADABLE,
        True,
    )
    assert [e.event for e in failed.history] == ["submitted", "failed"]
    assert dispatch.claim(db, "w1", instance, 4, seq=2, sealer=EnvSealer(SECRET_B))[0] == []


def test_submitting_secret_values_without_a_sealer_is_a_programming_error(session_factory):
    with pytest.raises(ValueError, match="sealer"):
        jobs.submit(session_factory, JobSubmit(command=["true"], secret_env={"K": "v"}))
    assert jobs.list_jobs(session_factory, None, 10, 0) == []


# --- over the API ---------------------------------------------------------------------------


def test_the_api_shows_names_only_and_hands_values_to_the_claiming_worker(app_client, app_settings):
    admin = auth_header(admin_token(app_settings.secret))
    body = {"command": ["env"], "env": {"PLAIN": "p"}, "secret_env": {"TOKEN": VALUE, "B": "2"}}
    response = app_client.post("/api/v1/jobs", json=body, headers=admin)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    batch = app_client.post("/api/v1/jobs/batch", json={"jobs": [body]}, headers=admin)
    assert batch.status_code == 201, batch.text

    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}"):
        shown = app_client.get(path, headers=admin)
        assert shown.status_code == 200 and VALUE not in shown.text
    detail = app_client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()
    assert (detail["env"], detail["secret_env_keys"]) == ({"PLAIN": "p"}, ["B", "TOKEN"])
    assert "secret_env" not in detail

    headers = auth_header(worker_token(app_settings.secret, "w1"))
    instance = uuid.uuid4().hex
    registration = {
        "instance_id": instance,
        "concurrency": 4,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
    }
    app_client.post(f"{EDGE}/workers/w1/register", json=registration, headers=headers)
    fetched = app_client.post(
        f"{EDGE}/workers/w1/fetch",
        json={"instance_id": instance, "free_slots": 4, "seq": 1},
        headers=headers,
    )
    assert fetched.status_code == 200, fetched.text
    envs = [job["env"] for job in fetched.json()["jobs"]]
    assert envs == [{"PLAIN": "p", "TOKEN": VALUE, "B": "2"}] * 2


def test_a_refused_secret_value_is_not_echoed(app_client, app_settings):
    admin = auth_header(admin_token(app_settings.secret))
    for secret_env, env in (({"K": VALUE + "\x00"}, {}), ({"K": VALUE}, {"K": "plain"})):
        body = {"command": ["true"], "env": env, "secret_env": secret_env}
        response = app_client.post("/api/v1/jobs", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert VALUE not in response.text
