"""Every value on the wire has a bound the database holds: out of bounds is a 422 (or 400)
that names the value, never a 500, and never a 500 for the other requests of its group."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import TypeAdapter, ValidationError

from edgefleet.contract import DB_INT_MAX, Heartbeat, Hostname, WorkerState
from edgefleet.server.services.heartbeats import Beat, BeatAnswer
from support import admin_token, auth_header, worker_token

BEAT = {"state": "idle", "applied_version": 1, "applied_concurrency": 2}


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def as_worker(app_settings):
    return lambda hostname: auth_header(worker_token(app_settings.secret, hostname))


def _registration(**extra) -> dict:
    body = {
        "instance_id": uuid.uuid4().hex,
        "concurrency": 2,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
    }
    return {**body, **extra}


@pytest.fixture
def register(app_client, as_worker):
    def register(hostname: str) -> str:
        body = _registration()
        url = f"/api/v1/edge/workers/{hostname}/register"
        response = app_client.post(url, json=body, headers=as_worker(hostname))
        assert response.status_code == 200, response.text
        return body["instance_id"]

    return register


def _refused(response, *where: str) -> str:
    """Assert a 422 whose detail points at ``where``; returns its message."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    issue = next(i for i in body["detail"] if [str(p) for p in i["loc"]][: len(where)] == [*where])
    return issue["msg"]


def test_a_version_past_a_column_is_refused_by_name(app_client, register, as_worker):
    instance = register("w1")
    beat = {**BEAT, "instance_id": instance, "applied_version": 2**70}
    url = "/api/v1/edge/workers/w1/heartbeat"
    response = app_client.post(url, json=beat, headers=as_worker("w1"))
    assert str(DB_INT_MAX) in _refused(response, "body", "applied_version")
    ok = app_client.post(url, json={**beat, "applied_version": 1}, headers=as_worker("w1"))
    assert ok.status_code == 200, ok.text


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("running_jobs", [2**63]),
        ("instance_id", "a\x00b"),
        ("instance_id", "x" * 65),
        ("applied_version", -1),
    ],
)
def test_heartbeat_values_out_of_bounds_are_422(app_client, register, as_worker, field, value):
    instance = register("w1")
    beat = {**BEAT, "instance_id": instance, field: value}
    response = app_client.post(
        "/api/v1/edge/workers/w1/heartbeat", json=beat, headers=as_worker("w1")
    )
    _refused(response, "body", field)


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"labels": {"site": "x" * (1024 * 1024)}}, ("body", "labels", "site")),
        ({"labels": {"site": "a\nb"}}, ("body", "labels", "site")),
        ({"labels": {"bad key": "v"}}, ("body", "labels")),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, ("body", "labels")),
        ({"sysinfo": {"host": "h", "nested": {"a": 1}}}, ("body", "sysinfo", "nested")),
        ({"sysinfo": {f"k{i}": i for i in range(65)}}, ("body", "sysinfo")),
        ({"sysinfo": {"host": "x" * 2000}}, ("body", "sysinfo", "host")),
        ({"pid": 2**40}, ("body", "pid")),
        ({"replaces": "z" * 100}, ("body", "replaces")),
    ],
)
def test_registration_maps_and_values_are_bounded(app_client, as_worker, extra, where):
    url = "/api/v1/edge/workers/w1/register"
    response = app_client.post(url, json=_registration(**extra), headers=as_worker("w1"))
    _refused(response, *where)


@pytest.mark.same_on_every_backend  # the contract alone
@pytest.mark.parametrize(
    "name", ["x" * 300, "*", "w[1]", "a/b", "a b", "bell\x07", "-w", "w\n", "", "é"]
)
def test_hostnames_are_names_not_patterns_paths_or_text(name):
    with pytest.raises(ValidationError):
        TypeAdapter(Hostname).validate_python(name)


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
def test_a_target_pattern_is_bounded_too(app_client, admin):
    for name in ("x" * 300, "w\n", "w\x00", ""):
        body = {"edge_hostname": name}
        response = app_client.post("/api/v1/workers/actions/shutdown", json=body, headers=admin)
        _refused(response, "body", "edge_hostname")


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
def test_a_path_name_no_worker_can_have_is_422_not_500(app_client, admin):
    for method in ("PUT", "DELETE"):
        response = app_client.request(
            method,
            "/api/v1/workers/a%20b%C3%A9/concurrency",
            json={"concurrency": 2},
            headers=admin,
        )
        _refused(response, "path", "hostname")


def test_a_bad_heartbeat_in_a_group_leaves_the_others_answered(app_client, register, as_worker):
    """Beats sent together share a write group; the bad one is refused alone."""
    instances = {f"g{i}": register(f"g{i}") for i in range(6)}

    def beat(hostname: str) -> int:
        version = 2**70 if hostname == "g3" else 1
        body = {**BEAT, "instance_id": instances[hostname], "applied_version": version}
        url = f"/api/v1/edge/workers/{hostname}/heartbeat"
        return app_client.post(url, json=body, headers=as_worker(hostname)).status_code

    with ThreadPoolExecutor(len(instances)) as pool:
        codes = dict(zip(instances, pool.map(beat, instances), strict=True))
    assert codes == {name: 422 if name == "g3" else 200 for name in instances}


async def test_a_value_the_database_refuses_fails_only_its_own_beat(app, register):
    """The second line: a beat that slipped past the contract (built without validation)
    costs only its own answer, not its whole group's."""
    instances = {name: register(name) for name in ("b1", "b2", "b3")}
    beats = [
        Beat(
            name,
            Heartbeat.model_construct(
                instance_id=instance,
                state=WorkerState.IDLE,
                running_jobs=[],
                applied_version=2**70 if name == "b2" else 1,
                applied_concurrency=2,
            ),
        )
        for name, instance in instances.items()
    ]
    answers = await app.state.context.beats.submit_many(beats)
    assert isinstance(answers[1], Exception)
    for answer in (answers[0], answers[2]):
        assert isinstance(answer, BeatAnswer)
        assert answer.desired.concurrency == 2 and answer.cancel == []


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        (f"/api/v1/jobs/{2**64}", None, ("path", "job_id")),
        (f"/api/v1/jobs/{2**31}/logs", None, ("path", "job_id")),
        (f"/api/v1/jobs/{2**63}/cancel", None, ("path", "job_id")),
        ("/api/v1/jobs", {"limit": -1}, ("query", "limit")),
        ("/api/v1/jobs", {"offset": 2**70}, ("query", "offset")),
        ("/api/v1/jobs", {"state": "exploded"}, ("query", "state")),
        ("/api/v1/workers", {"state": "sleepy"}, ("query", "state")),
        ("/api/v1/workers", {"edge_hostname": "a\x00"}, ("query", "edge_hostname")),
        ("/api/v1/audit", {"since": "9999-12-31T23:59:59-23:59"}, ("query", "since")),
        ("/api/v1/audit", {"since": "0001-01-01T00:00:00+01:00"}, ("query", "since")),
        ("/api/v1/audit", {"since": "99999-01-01"}, ("query", "since")),
        ("/api/v1/jobs/1/logs", {"attempt": 2**40}, ("query", "attempt")),
    ],
)
def test_paths_and_queries_out_of_bounds_are_422(app_client, admin, path, params, where):
    method = "POST" if path.endswith("/cancel") else "GET"
    response = app_client.request(method, path, params=params, headers=admin)
    _refused(response, *where)


def test_a_watch_past_a_column_is_422(app_client, register, as_worker):
    instance = register("w1")
    url = "/api/v1/edge/workers/w1/watch"
    params = {"instance_id": instance, "version": 2**63, "timeout": 0.1}
    _refused(app_client.get(url, params=params, headers=as_worker("w1")), "query", "version")
    params = {"instance_id": "a\x00", "version": 1, "timeout": 0.1}
    _refused(app_client.get(url, params=params, headers=as_worker("w1")), "query", "instance_id")
    params = {"instance_id": instance, "version": 1, "timeout": 0.1}
    pattern = "/api/v1/edge/workers/w*/watch"
    _refused(app_client.get(pattern, params=params, headers=as_worker("w1")), "path", "hostname")


@pytest.mark.same_on_every_backend  # the cursor's parsing
def test_a_log_cursor_of_other_digits_is_400(app_client, admin):
    job = app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
    for cursor in ("²:1", "1:" + "9" * 40):
        response = app_client.get(
            f"/api/v1/jobs/{job}/logs", params={"cursor": cursor}, headers=admin
        )
        assert response.status_code == 400, response.text


@pytest.mark.same_on_every_backend  # the contract refuses it before the database
@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (
            "/api/v1/edge/jobs/1/result",
            {"attempt": 1, "state": "failed", "reason": "a\x00"},
            "reason",
        ),
        ("/api/v1/edge/jobs/1/result", {"attempt": 2**31, "state": "failed"}, "attempt"),
        (
            "/api/v1/edge/jobs/1/result",
            {"attempt": 1, "state": "failed", "exit_code": 2**40},
            "exit_code",
        ),
        ("/api/v1/edge/jobs/1/logs", {"attempt": 1, "seq": 0, "data": "a\x00b"}, "data"),
        ("/api/v1/edge/jobs/1/logs", {"attempt": 1, "seq": 2**32, "data": ""}, "seq"),
        ("/api/v1/edge/jobs/1/release", {"attempt": 1, "seq": 2**63}, "seq"),
    ],
)
def test_worker_reports_out_of_bounds_are_422(app_client, as_worker, path, body, where):
    body = {"instance_id": "i1", **body} if "/logs" not in path else body
    _refused(app_client.post(path, json=body, headers=as_worker("w1")), "body", where)


def test_text_no_utf_8_can_hold_is_422_not_500(app_client, as_worker):
    """An unpaired surrogate (valid JSON escape, no valid UTF-8), in a value or in a key."""
    url = "/api/v1/edge/workers/w1/register"
    headers = {**as_worker("w1"), "Content-Type": "application/json"}
    for labels in ('{"site": "\\ud800"}', '{"\\ud800": "x"}'):
        raw = (
            '{"instance_id": "abcdefgh12", "concurrency": 1, "queues": ["default"], '
            f'"heartbeat_interval": 1, "labels": {labels}}}'
        )
        response = app_client.post(url, content=raw.encode(), headers=headers)
        _refused(response, "body", "labels")


@pytest.mark.same_on_every_backend  # the framework's error bodies
def test_framework_errors_have_the_error_body(app_client, as_worker, admin):
    url = "/api/v1/edge/workers/w1/register"
    headers = {**as_worker("w1"), "Content-Type": "application/json"}
    unparsable = app_client.post(url, content=b"{not json", headers=headers)
    assert unparsable.status_code in (400, 422)
    assert {"error", "detail"} <= unparsable.json().keys()
    for response in (
        app_client.get("/api/v1/nowhere", headers=admin),
        app_client.patch("/api/v1/jobs", headers=admin),
    ):
        assert response.status_code in (404, 405)
        assert {"error", "detail"} <= response.json().keys(), response.text


@pytest.mark.same_on_every_backend  # the OpenAPI document
def test_the_document_declares_the_error_bodies(app_client, admin):
    spec = app_client.get("/openapi.json", headers=admin).json()
    beat = spec["paths"]["/api/v1/edge/workers/{hostname}/heartbeat"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422"} <= beat.keys()
    assert beat["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ValidationErrorBody"
    )
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error", "detail"]
    assert schemas["ValidationErrorBody"]["properties"]["detail"]["items"] == {
        "$ref": "#/components/schemas/ValidationIssue"
    }
    assert list(schemas) == sorted(schemas)
    dangling = {ref for ref in _refs(spec) if ref.rsplit("/", 1)[-1] not in schemas}
    assert not dangling


def _refs(node: object) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
