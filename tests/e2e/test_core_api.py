"""End-to-end: the HTTP API of a real server: auth, the OpenAPI document, and bad input.

Bad input must be refused with a clear error (non-zero exit from the CLI, a 4xx JSON body
from the API) and must change nothing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

import httpx
import jwt
import pytest

from edgefleet.auth import Identity, mint_token
from edgefleet.settings import MAX_CONCURRENCY
from support import admin_token, auth_header, squash, worker_token
from support.cli import describe

HOST = "edge-api"

EDGE_PATHS = {
    "/api/v1/edge/workers/{hostname}/register",
    "/api/v1/edge/workers/{hostname}/heartbeat",
    "/api/v1/edge/workers/{hostname}/watch",
    "/api/v1/edge/workers/{hostname}/fetch",
    "/api/v1/edge/workers/{hostname}/results",
    "/api/v1/edge/jobs/{job_id}/result",
    "/api/v1/edge/jobs/{job_id}/release",
    "/api/v1/edge/jobs/{job_id}/logs",
}
ADMIN_PATHS = {
    "/api/v1/workers",
    "/api/v1/workers/{hostname}/concurrency",
    "/api/v1/jobs",
    "/api/v1/jobs/{job_id}",
    "/api/v1/jobs/{job_id}/logs",
    "/api/v1/health",
}

#: What the operator sees of a worker; none of it may move on a refused request.
STABLE_FIELDS = (
    "concurrency",
    "concurrency_source",
    "flag_concurrency",
    "applied_concurrency",
    "desired_version",
    "applied_version",
    "pid",
    "instance_id",
)


def _stable(view: dict) -> dict:
    return {field: view[field] for field in STABLE_FIELDS}


@pytest.fixture
def http(server):
    """A plain HTTP client for the server: no token unless a test adds one."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.mark.same_on_every_backend  # routes and tokens, no stored state
def test_health_is_open_and_the_api_map_needs_a_viewer_token(http, edgefleet_env):
    health = http.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    for path in ("/openapi.json", "/docs", "/redoc"):
        assert http.get(path).status_code == 401, path
    viewer = mint_token(edgefleet_env["EDGEFLEET_SECRET"], Identity("reader", "viewer"))
    headers = {"Authorization": f"Bearer {viewer}"}
    assert http.get("/docs", headers=headers).status_code == 200
    spec = http.get("/openapi.json", headers=headers)
    assert spec.status_code == 200
    document = spec.json()
    assert set(document["paths"]) >= EDGE_PATHS | ADMIN_PATHS

    schemas = document["components"]["schemas"]
    desired = schemas["DesiredState"]["properties"]
    assert {"version", "concurrency", "concurrency_source", "queues"} <= set(desired)
    heartbeat = schemas["Heartbeat"]
    assert {"instance_id", "state", "applied_version", "applied_concurrency"} <= set(
        heartbeat["properties"]
    )
    assert heartbeat["additionalProperties"] is False
    operation = document["paths"]["/api/v1/edge/workers/{hostname}/heartbeat"]["post"]
    body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.endswith("/Heartbeat")
    concurrency = schemas["ConcurrencySet"]["properties"]["concurrency"]
    assert (concurrency["minimum"], concurrency["maximum"]) == (1, MAX_CONCURRENCY)
    # Every route but health names the bearer scheme, so /docs offers to authorize.
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "security" not in document["paths"]["/api/v1/health"]["get"]


@pytest.mark.same_on_every_backend  # the HTTP server's keep-alive
def test_an_idle_connection_is_kept_between_heartbeats(server):
    """A worker's beats reuse one connection: the server keeps an idle one open for
    EDGEFLEET_KEEP_ALIVE (75 s), not uvicorn's 5 s."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=10)
    opened = None
    try:
        for pause in (0, 6.5):
            time.sleep(pause)
            connection.request("GET", "/api/v1/health")
            response = connection.getresponse()
            assert (response.status, response.read()[:1]) == (200, b"{")
            opened = opened or connection.sock
        # http.client never reconnects by itself: a connection the server closed would raise.
        assert connection.sock is opened
    finally:
        connection.close()


@pytest.mark.same_on_every_backend  # a start-up option
def test_a_bad_keep_alive_is_refused(edgefleet_env, cli):
    env = dict(edgefleet_env, EDGEFLEET_KEEP_ALIVE="0")
    result = cli("server", "--port", "1", env=env)
    assert result.returncode != 0
    assert "EDGEFLEET_KEEP_ALIVE" in result.stderr


def _heartbeat_body(view: dict) -> dict:
    return {
        "instance_id": view["instance_id"],
        "state": "idle",
        "running_jobs": [],
        "applied_version": view["applied_version"],
        "applied_concurrency": view["applied_concurrency"],
    }


def test_tokens_are_required_and_scoped(http, admin_api, start_worker, edgefleet_env):
    secret = edgefleet_env["EDGEFLEET_SECRET"]
    worker = start_worker(HOST, concurrency=2)
    before = admin_api.worker(HOST)
    now = int(time.time())

    def unknown_role_token() -> str:
        claims = {"sub": "x", "role": "root", "aud": "edgefleet", "iat": now, "exp": now + 60}
        return jwt.encode(claims, secret, algorithm="HS256")

    def no_audience_token() -> str:
        claims = {"sub": "x", "role": "admin", "iat": now, "exp": now + 60}
        return jwt.encode(claims, secret, algorithm="HS256")

    unauthenticated = {
        "no header": {},
        "not a JWT": {"Authorization": "Bearer not-a-token"},
        "not bearer": {"Authorization": "Basic dGVzdDp0ZXN0"},
        "wrong secret": auth_header(admin_token("another-secret-" + "x" * 32)),
        "expired": auth_header(admin_token(secret, ttl=-600)),
        "unknown role": auth_header(unknown_role_token()),
        "no audience": auth_header(no_audience_token()),
    }
    for case, headers in unauthenticated.items():
        for method, path in [("GET", "/api/v1/workers"), ("POST", "/api/v1/jobs")]:
            response = http.request(method, path, headers=headers, json={"command": ["true"]})
            assert response.status_code == 401, (case, path, response.text)
            assert response.json()["error"] == "unauthorized", case
            assert response.headers.get("www-authenticate") == "Bearer", case
        response = http.post(
            f"/api/v1/edge/workers/{HOST}/heartbeat", headers=headers, json=_heartbeat_body(before)
        )
        assert response.status_code == 401, (case, response.text)

    as_worker = auth_header(worker_token(secret, HOST))
    for method, path, body in [
        ("GET", "/api/v1/workers", None),
        ("PUT", f"/api/v1/workers/{HOST}/concurrency", {"concurrency": 5}),
        ("DELETE", f"/api/v1/workers/{HOST}/concurrency", None),
        ("POST", "/api/v1/jobs", {"command": ["true"]}),
        ("GET", "/api/v1/jobs", None),
    ]:
        response = http.request(method, path, headers=as_worker, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"] == "forbidden"

    as_admin = auth_header(admin_token(secret))
    response = http.post(
        f"/api/v1/edge/workers/{HOST}/heartbeat", headers=as_admin, json=_heartbeat_body(before)
    )
    assert response.status_code == 403, response.text

    # A worker's token lets it act only as itself.
    as_other = auth_header(worker_token(secret, "edge-impostor"))
    registration = {
        "instance_id": "f" * 32,
        "concurrency": 9,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
    }
    for method, path, body, params in [
        ("POST", f"/api/v1/edge/workers/{HOST}/register", registration, None),
        ("POST", f"/api/v1/edge/workers/{HOST}/heartbeat", _heartbeat_body(before), None),
        ("POST", f"/api/v1/edge/workers/{HOST}/fetch", {"instance_id": "x", "free_slots": 1}, None),
        (
            "GET",
            f"/api/v1/edge/workers/{HOST}/watch",
            None,
            {"instance_id": before["instance_id"], "version": 0, "timeout": 1},
        ),
    ]:
        response = http.request(method, path, headers=as_other, json=body, params=params)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == "forbidden"

    # The valid admin token works, and none of the refused requests changed anything.
    assert http.get("/api/v1/workers", headers=as_admin).status_code == 200
    workers = admin_api.workers()
    assert [w["hostname"] for w in workers] == [HOST]
    assert _stable(workers[0]) == _stable(before)
    assert admin_api.jobs() == []
    assert worker.alive()


CLI_BAD_CONCURRENCY = ["0", "-1", "abc", "2.5", str(MAX_CONCURRENCY + 1), "1" + "0" * 30]

API_BAD_BODIES = [
    {"concurrency": 0},
    {"concurrency": -1},
    {"concurrency": "abc"},
    {"concurrency": 2.5},
    {"concurrency": "4"},
    {"concurrency": True},
    {"concurrency": None},
    {"concurrency": MAX_CONCURRENCY + 1},
    {"concurrency": 10**30},
    {},
    {"concurrency": 4, "unknown": 1},
    {"concurrency": 4, "hostname": "other"},
    [4],
    4,
]
API_BAD_RAW = [
    (b"{not json", "application/json"),
    (b'{"concurrency": 4', "application/json"),
    (b"", "application/json"),
    (b"concurrency=4", "application/x-www-form-urlencoded"),
]


def test_bad_concurrency_is_refused_and_changes_nothing(server, admin_api, start_worker, cli):
    worker = start_worker(HOST, concurrency=3)
    before = admin_api.worker(HOST)

    # CLI: a clear error and a non-zero exit. Refused calls are independent, so they run in
    # parallel; desired_version only ever grows, so an accepted one would show at the end.
    cases = [["-H", HOST, "-c", value] for value in CLI_BAD_CONCURRENCY]
    cases += [["-H", HOST], ["-H", HOST, "-c", "4", "--reset"]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: cli("set-worker-concurrency", *args), cases))
    for result in results:
        assert result.returncode != 0, describe(result)
        message = squash(result.stderr).lower()
        assert "concurrency" in message or "reset" in message, describe(result)
        assert "Traceback" not in result.stderr, describe(result)

    unknown = cli("set-worker-concurrency", "-H", "no-such-edge", "-c", "4")
    assert unknown.returncode == 1, describe(unknown)
    assert "no-such-edge" in unknown.stderr
    assert _stable(admin_api.worker(HOST)) == _stable(before)

    # API: 422 with a JSON error body for anything malformed, 404 for an unknown worker.
    for body in API_BAD_BODIES:
        response = admin_api.request("PUT", f"/workers/{HOST}/concurrency", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()
        assert error["error"] == "validation_error" and error["detail"], (body, error)
    for content, content_type in API_BAD_RAW:
        response = admin_api.request(
            "PUT",
            f"/workers/{HOST}/concurrency",
            content=content,
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 422, (content, response.text)
        assert response.json()["error"] == "validation_error"

    for response in (
        admin_api.set_concurrency("no-such-edge", 4),
        admin_api.reset_concurrency("no-such-edge"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
        assert "no-such-edge" in str(response.json()["detail"])

    after = admin_api.workers()
    assert [w["hostname"] for w in after] == [HOST]
    assert _stable(after[0]) == _stable(before)
    assert after[0]["concurrency"] == 3

    # The worker still runs with its value, and a valid change still goes through.
    assert worker.alive()
    assert admin_api.set_concurrency(HOST, 4).status_code == 200
    assert (
        admin_api.wait_applied(HOST, 4, pid=worker.pid)["desired_version"]
        > before["desired_version"]
    )
