"""Who may call what: every route of a live server, called by every kind of caller.

``MATRIX`` below is the one place the expected answer of each (route, caller) cell is written
down. The test reads the route list from the server's own OpenAPI document: a route there that
the matrix does not list fails the test, so a new route cannot ship without a decision here.

The callers are real: operator tokens made through ``POST /tokens``, two workers enrolled with
a join token (``POST /tokens/join`` then ``POST /edge/enroll``) that registered with their own
credentials, and the join token itself. "own worker" is the worker the route is about (the one
in the path or the body, the one holding the job), "other worker" any other enrolled worker.
Every cell gets a request of its own, with a body valid enough to pass validation, on objects
made for it where the call changes them (a worker to remove or revoke, a job to release), so
the cells do not depend on each other's order.

``OK`` means the route did its job (2xx, or 3xx for a redirect); 401 and 403 are refusals.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from edgefleet.contract import API_PREFIX
from support import AdminApi, ServerProcess

pytestmark = pytest.mark.same_on_every_backend

OK = "OK"
CALLERS = ("anonymous", "viewer", "operator", "admin", "own worker", "other worker", "join token")

# fmt: off
MATRIX: dict[str, tuple[str | int, ...]] = {
    # route                                               anon viewer oper admin  own other join
    "GET /api/v1/health":                                  (OK,  OK,  OK,  OK,  OK,  OK,  OK),
    "POST /api/v1/edge/enroll":                            (401, 401, 401, 401, 401, 401, OK),
    "POST /api/v1/edge/workers/{hostname}/credential":     (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/workers/{hostname}/register":       (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/workers/{hostname}/heartbeat":      (401, 403, 403, 403, OK,  403, 401),
    "GET /api/v1/edge/workers/{hostname}/watch":           (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/workers/{hostname}/maintenance":    (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/workers/{hostname}/fetch":          (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/workers/{hostname}/results":        (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/jobs/{job_id}/result":              (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/jobs/{job_id}/release":             (401, 403, 403, 403, OK,  403, 401),
    "POST /api/v1/edge/jobs/{job_id}/logs":                (401, 403, 403, 403, OK,  403, 401),
    "GET /api/v1/workers":                                 (401, OK,  OK,  OK,  403, 403, 401),
    "PATCH /api/v1/workers":                               (401, 403, OK,  OK,  403, 403, 401),
    "GET /api/v1/workers/{hostname}":                      (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/workers/{hostname}/explain":              (401, OK,  OK,  OK,  403, 403, 401),
    "DELETE /api/v1/workers/{hostname}":                   (401, 403, 403, OK,  403, 403, 401),
    "PUT /api/v1/workers/{hostname}/concurrency":          (401, 403, OK,  OK,  403, 403, 401),
    "DELETE /api/v1/workers/{hostname}/concurrency":       (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/set-concurrency":        (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/add-queues":             (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/remove-queues":          (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/reset-queues":           (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/request-maintenance":    (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/exit-maintenance":       (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/update-maintenance-comment": (401, 403, OK, OK, 403, 403, 401),
    "POST /api/v1/workers/actions/shutdown":               (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/workers/actions/revoke":                 (401, 403, 403, OK,  403, 403, 401),
    "POST /api/v1/jobs":                                   (401, 403, OK,  OK,  403, 403, 401),
    "GET /api/v1/jobs":                                    (401, OK,  OK,  OK,  403, 403, 401),
    "POST /api/v1/jobs/batch":                             (401, 403, OK,  OK,  403, 403, 401),
    "POST /api/v1/jobs/status":                            (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/jobs/{job_id}":                           (401, OK,  OK,  OK,  403, 403, 401),
    "POST /api/v1/jobs/{job_id}/cancel":                   (401, 403, OK,  OK,  403, 403, 401),
    "GET /api/v1/jobs/{job_id}/logs":                      (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/audit":                                   (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/queues":                                  (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/queues/throughput":                       (401, OK,  OK,  OK,  403, 403, 401),
    "GET /api/v1/concurrency-rules":                       (401, OK,  OK,  OK,  403, 403, 401),
    "PUT /api/v1/concurrency-rules":                       (401, 403, OK,  OK,  403, 403, 401),
    "DELETE /api/v1/concurrency-rules":                    (401, 403, OK,  OK,  403, 403, 401),
    "PUT /api/v1/queues/{name}":                           (401, 403, OK,  OK,  403, 403, 401),
    "GET /api/v1/schedules":                               (401, OK,  OK,  OK,  403, 403, 401),
    "POST /api/v1/schedules":                              (401, 403, OK,  OK,  403, 403, 401),
    "DELETE /api/v1/schedules/{name}":                     (401, 403, OK,  OK,  403, 403, 401),
    "GET /api/v1/tokens":                                  (401, 403, 403, OK,  403, 403, 401),
    "POST /api/v1/tokens":                                 (401, 403, 403, OK,  403, 403, 401),
    "DELETE /api/v1/tokens/{name}":                        (401, 403, 403, OK,  403, 403, 401),
    "POST /api/v1/tokens/join":                            (401, 403, 403, OK,  403, 403, 401),
    "GET /api/v1/whoami":                                  (401, OK,  OK,  OK,  OK,  OK,  401),
    "GET /metrics":                                        (401, OK,  OK,  OK,  403, 403, 401),
    # Not in the OpenAPI document (NOT_DOCUMENTED), listed all the same.
    "GET /openapi.json":                                   (401, OK,  OK,  OK,  403, 403, 401),
    "GET /docs":                                           (401, OK,  OK,  OK,  403, 403, 401),
    "GET /redoc":                                          (401, OK,  OK,  OK,  403, 403, 401),
    "GET /":                                               (OK,  OK,  OK,  OK,  OK,  OK,  OK),
    "GET /ui":                                             (OK,  OK,  OK,  OK,  OK,  OK,  OK),
    "GET /ui/{name}":                                      (OK,  OK,  OK,  OK,  OK,  OK,  OK),
}
# fmt: on

#: Routes the server serves but leaves out of its OpenAPI document.
NOT_DOCUMENTED = frozenset(
    {"GET /openapi.json", "GET /docs", "GET /redoc", "GET /", "GET /ui", "GET /ui/{name}"}
)


# --- the fleet the calls run against ----------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """An enrolled worker that registered with its own credential."""

    hostname: str
    credential: str
    instance_id: str
    queue: str


@dataclass
class Call:
    """One request: its path (filled in), body or query, and the worker it is about."""

    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    subject: Worker | None = None  # the route's own worker; None: the fleet's first worker


class Fleet:
    """A live server with the callers of the matrix: operator tokens, workers, a join token.

    Set-up and the objects cells need are made with a JWT minted from the secret (full rights,
    never rate limited), so only the cell's own request uses the caller's token.
    """

    def __init__(self, url: str, secret: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30.0)
        self.admin = AdminApi(url, secret)
        self._names = itertools.count(1)
        self.tokens: dict[str, str] = {}
        for role in ("viewer", "operator", "admin"):
            body = {"name": f"matrix-{role}", "role": role, "ttl_seconds": 3600}
            self.tokens[role] = self.admin.call("POST", "/tokens", expect=201, json=body)["token"]
        join = {"ttl_seconds": 3600, "uses": 1000, "labels": {"site": "matrix"}}
        self.join_token = self.admin.call("POST", "/tokens/join", expect=201, json=join)["token"]
        self.first = self.enroll("own")
        self.second = self.enroll("other")

    def close(self) -> None:
        self.http.close()
        self.admin.close()

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self._names)}"

    # --- workers and jobs ---------------------------------------------------------------------

    def enroll(self, prefix: str, *, state: str | None = None) -> Worker:
        """A new worker: enrolled with the join token, registered with its credential, and
        (with ``state``) having reported that state in a heartbeat."""
        hostname = self.name(f"matrix-{prefix}")
        issued = self.http.post(
            f"{API_PREFIX}/edge/enroll",
            json={"hostname": hostname},
            headers=_bearer(self.join_token),
        )
        assert issued.status_code == 201, issued.text
        worker = Worker(hostname, issued.json()["credential"], f"instance-{hostname}", hostname)
        registered = self._as(worker, "POST", "register", json=registration(worker))
        assert registered.status_code == 200, registered.text
        if state is not None:
            beat = self._as(worker, "POST", "heartbeat", json=heartbeat(worker, state))
            assert beat.status_code == 200, beat.text
        return worker

    def _as(self, worker: Worker, method: str, action: str, **kwargs: Any) -> httpx.Response:
        path = f"{API_PREFIX}/edge/workers/{worker.hostname}/{action}"
        return self.http.request(method, path, headers=_bearer(worker.credential), **kwargs)

    def claimed_job(self, worker: Worker | None = None) -> tuple[Worker, int]:
        """A job running on ``worker`` (the first worker by default): submitted to its queue,
        claimed by its fetch."""
        worker = worker or self.first
        job_id = self.admin.submit(["true"], queue=worker.queue)
        fetched = self._as(
            worker, "POST", "fetch", json={"instance_id": worker.instance_id, "free_slots": 1024}
        )
        assert fetched.status_code == 200, fetched.text
        assert job_id in [job["id"] for job in fetched.json()["jobs"]], fetched.text
        return worker, job_id

    def queued_job(self) -> int:
        """A job no worker serves: it stays queued."""
        return self.admin.submit(["true"], queue="matrix-unserved")

    def operator_token_named(self) -> str:
        name = self.name("matrix-spare")
        body = {"name": name, "role": "viewer", "ttl_seconds": 600}
        self.admin.call("POST", "/tokens", expect=201, json=body)
        return name

    def rule_named(self) -> str:
        """A concurrency rule of its own (``m=NAME``, matching no worker), for a cell to remove."""
        name = self.name("matrix-rule")
        self.admin.call(
            "PUT", "/concurrency-rules", json={"selector": {"m": name}, "concurrency": 3}
        )
        return name

    def schedule_named(self) -> str:
        """A schedule of its own (``m=NAME``, matching no worker), for a cell to remove."""
        name = self.name("matrix-schedule")
        body = {"name": name, "selector": {"m": name}, "cron": "0 22 * * *"}
        body |= {"duration_seconds": 3600, "concurrency": 3}
        self.admin.call("POST", "/schedules", expect=201, json=body)
        return name

    # --- calling ------------------------------------------------------------------------------

    def token(self, caller: str, subject: Worker) -> str | None:
        if caller == "anonymous":
            return None
        if caller == "join token":
            return self.join_token
        if caller == "own worker":
            return subject.credential
        if caller == "other worker":
            return (self.second if subject == self.first else self.first).credential
        return self.tokens[caller]

    def call(self, route: str, caller: str) -> httpx.Response:
        method = route.split()[0]
        call = REQUESTS[route](self)
        token = self.token(caller, call.subject or self.first)
        headers = _bearer(token) if token else {}
        return self.http.request(
            method, call.path, json=call.json, params=call.params, headers=headers
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def registration(worker: Worker) -> dict[str, Any]:
    return {
        "instance_id": worker.instance_id,
        "concurrency": 1024,
        "queues": [worker.queue, "spare"],
        "heartbeat_interval": 30,
    }


def heartbeat(worker: Worker, state: str = "idle") -> dict[str, Any]:
    return {
        "instance_id": worker.instance_id,
        "state": state,
        "running_jobs": [],
        "applied_version": 0,
        "applied_concurrency": 1024,
    }


# --- one request per route --------------------------------------------------------------------

V1 = API_PREFIX
Build = Callable[[Fleet], Call]


def _edge(action: str, body: Callable[[Worker], Any] | None = None, fresh: bool = True) -> Build:
    """A worker route about a worker: a fresh one where the call changes it."""

    def build(fleet: Fleet) -> Call:
        worker = fleet.enroll("edge") if fresh else fleet.first
        path = f"{V1}/edge/workers/{worker.hostname}/{action}"
        return Call(path, json=body(worker) if body else None, subject=worker)

    return build


def _watch(fleet: Fleet) -> Call:
    worker = fleet.first
    params = {"instance_id": worker.instance_id, "version": 0, "timeout": 1}
    return Call(f"{V1}/edge/workers/{worker.hostname}/watch", params=params, subject=worker)


def _results(fleet: Fleet) -> Call:
    worker, job_id = fleet.claimed_job()
    result = {"job_id": job_id, **_result(worker)}
    path = f"{V1}/edge/workers/{worker.hostname}/results"
    return Call(path, json={"results": [result]}, subject=worker)


def _result(worker: Worker) -> dict[str, Any]:
    return {"instance_id": worker.instance_id, "attempt": 1, "state": "success", "exit_code": 0}


def _held_job(action: str, body: Callable[[Worker], Any]) -> Build:
    """A worker route about a job: a job running on the route's own worker."""

    def build(fleet: Fleet) -> Call:
        worker, job_id = fleet.claimed_job()
        return Call(f"{V1}/edge/jobs/{job_id}/{action}", json=body(worker), subject=worker)

    return build


def _job(suffix: str = "") -> Build:
    """An operator route about a job: one running on the first worker."""

    def build(fleet: Fleet) -> Call:
        worker, job_id = fleet.claimed_job()
        return Call(f"{V1}/jobs/{job_id}{suffix}", subject=worker)

    return build


def _worker_path(suffix: str = "", json: Any = None, state: str | None = None) -> Build:
    def build(fleet: Fleet) -> Call:
        worker = fleet.enroll("target", state=state)
        return Call(f"{V1}/workers/{worker.hostname}{suffix}", json=json, subject=worker)

    return build


def _action(action: str, maintenance: bool = False, **extra: Any) -> Build:
    """A control action targeting a fresh worker by name (in maintenance if need be)."""

    def build(fleet: Fleet) -> Call:
        worker = fleet.enroll("target")
        if maintenance:
            body = {"edge_hostname": worker.hostname, "comments": "for the matrix"}
            fleet.admin.call("POST", "/workers/actions/request-maintenance", json=body)
        body = {"edge_hostname": worker.hostname, **extra}
        return Call(f"{V1}/workers/actions/{action}", json=body, subject=worker)

    return build


def _change(change: dict[str, Any]) -> Build:
    """``PATCH /workers``: one change to a fresh worker named in the target."""

    def build(fleet: Fleet) -> Call:
        worker = fleet.enroll("target")
        body = {"target": {"edge_hostname": worker.hostname}, "change": change}
        return Call(f"{V1}/workers", json=body, subject=worker)

    return build


def _fixed(path: str, json: Any = None, params: dict[str, Any] | None = None) -> Build:
    return lambda fleet: Call(path, json=json, params=params)


JOB = {"command": ["true"], "queue": "matrix-unserved"}

REQUESTS: dict[str, Build] = {
    "GET /api/v1/health": _fixed(f"{V1}/health"),
    "POST /api/v1/edge/enroll": lambda fleet: Call(
        f"{V1}/edge/enroll", json={"hostname": fleet.name("matrix-enrolled")}
    ),
    "POST /api/v1/edge/workers/{hostname}/credential": _edge("credential"),
    "POST /api/v1/edge/workers/{hostname}/register": _edge("register", registration),
    "POST /api/v1/edge/workers/{hostname}/heartbeat": _edge("heartbeat", heartbeat, fresh=False),
    "GET /api/v1/edge/workers/{hostname}/watch": _watch,
    "POST /api/v1/edge/workers/{hostname}/maintenance": _edge(
        "maintenance", lambda w: {"instance_id": w.instance_id, "maintenance": False}
    ),
    "POST /api/v1/edge/workers/{hostname}/fetch": _edge(
        "fetch", lambda w: {"instance_id": w.instance_id, "free_slots": 1}, fresh=False
    ),
    "POST /api/v1/edge/workers/{hostname}/results": _results,
    "POST /api/v1/edge/jobs/{job_id}/result": _held_job("result", _result),
    "POST /api/v1/edge/jobs/{job_id}/release": _held_job(
        "release", lambda w: {"instance_id": w.instance_id, "attempt": 1}
    ),
    "POST /api/v1/edge/jobs/{job_id}/logs": _held_job(
        "logs", lambda w: {"attempt": 1, "seq": 0, "data": "hello from the matrix\n"}
    ),
    "GET /api/v1/workers": _fixed(f"{V1}/workers"),
    "PATCH /api/v1/workers": _change({"action": "set-concurrency", "concurrency": 3}),
    "GET /api/v1/workers/{hostname}": lambda fleet: Call(
        f"{V1}/workers/{fleet.first.hostname}", subject=fleet.first
    ),
    "GET /api/v1/workers/{hostname}/explain": lambda fleet: Call(
        f"{V1}/workers/{fleet.first.hostname}/explain", subject=fleet.first
    ),
    "DELETE /api/v1/workers/{hostname}": _worker_path(state="stopped"),
    "PUT /api/v1/workers/{hostname}/concurrency": _worker_path(
        "/concurrency", json={"concurrency": 3}
    ),
    "DELETE /api/v1/workers/{hostname}/concurrency": _worker_path("/concurrency"),
    "POST /api/v1/workers/actions/set-concurrency": _action("set-concurrency", concurrency=3),
    "POST /api/v1/workers/actions/add-queues": _action("add-queues", queues=["gpu"]),
    "POST /api/v1/workers/actions/remove-queues": _action("remove-queues", queues=["spare"]),
    "POST /api/v1/workers/actions/reset-queues": _action("reset-queues"),
    "POST /api/v1/workers/actions/request-maintenance": _action(
        "request-maintenance", comments="disk swap"
    ),
    "POST /api/v1/workers/actions/exit-maintenance": _action("exit-maintenance", True),
    "POST /api/v1/workers/actions/update-maintenance-comment": _action(
        "update-maintenance-comment", True, comments="disk swap, part two"
    ),
    "POST /api/v1/workers/actions/shutdown": _action("shutdown"),
    "POST /api/v1/workers/actions/revoke": _action("revoke"),
    "POST /api/v1/jobs": _fixed(f"{V1}/jobs", json=JOB),
    "GET /api/v1/jobs": _fixed(f"{V1}/jobs", params={"limit": 10}),
    "POST /api/v1/jobs/batch": _fixed(f"{V1}/jobs/batch", json={"jobs": [JOB, JOB]}),
    "POST /api/v1/jobs/status": _fixed(f"{V1}/jobs/status", json={"keys": ["a", "b"]}),
    "GET /api/v1/jobs/{job_id}": _job(),
    "POST /api/v1/jobs/{job_id}/cancel": _job("/cancel"),
    "GET /api/v1/jobs/{job_id}/logs": _job("/logs"),
    "GET /api/v1/audit": _fixed(f"{V1}/audit", params={"limit": 10}),
    "GET /api/v1/queues": _fixed(f"{V1}/queues"),
    "GET /api/v1/queues/throughput": _fixed(f"{V1}/queues/throughput", params={"minutes": 5}),
    "GET /api/v1/concurrency-rules": _fixed(f"{V1}/concurrency-rules"),
    "PUT /api/v1/concurrency-rules": lambda fleet: Call(
        f"{V1}/concurrency-rules", json={"selector": {"m": fleet.name("r")}, "concurrency": 3}
    ),
    "DELETE /api/v1/concurrency-rules": lambda fleet: Call(
        f"{V1}/concurrency-rules", params={"selector": f"m={fleet.rule_named()}"}
    ),
    "PUT /api/v1/queues/{name}": _fixed(f"{V1}/queues/matrix-capped", json={"concurrency": 3}),
    "GET /api/v1/schedules": _fixed(f"{V1}/schedules"),
    "POST /api/v1/schedules": lambda fleet: Call(
        f"{V1}/schedules",
        json={
            "name": fleet.name("s"),
            "selector": {"m": "none"},
            "cron": "0 22 * * *",
            "duration_seconds": 3600,
            "concurrency": 3,
        },
    ),
    "DELETE /api/v1/schedules/{name}": lambda fleet: Call(
        f"{V1}/schedules/{fleet.schedule_named()}"
    ),
    "GET /api/v1/tokens": _fixed(f"{V1}/tokens"),
    "POST /api/v1/tokens": lambda fleet: Call(
        f"{V1}/tokens", json={"name": fleet.name("matrix-new"), "role": "viewer"}
    ),
    "DELETE /api/v1/tokens/{name}": lambda fleet: Call(
        f"{V1}/tokens/{fleet.operator_token_named()}"
    ),
    "POST /api/v1/tokens/join": _fixed(f"{V1}/tokens/join", json={"ttl_seconds": 600}),
    "GET /api/v1/whoami": _fixed(f"{V1}/whoami"),
    "GET /metrics": _fixed("/metrics"),
    "GET /openapi.json": _fixed("/openapi.json"),
    "GET /docs": _fixed("/docs"),
    "GET /redoc": _fixed("/redoc"),
    "GET /": _fixed("/"),
    "GET /ui": _fixed("/ui"),
    "GET /ui/{name}": _fixed("/ui/app.js"),
}


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
def fleet(edgefleet_env: dict[str, str], server_factory) -> Iterator[Fleet]:
    # The workers here are requests, not processes: nothing heartbeats in the background, so
    # none may be judged offline (and its jobs lost) while the matrix runs.
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "3600"
    server: ServerProcess = server_factory()
    fleet = Fleet(server.url, edgefleet_env["EDGEFLEET_SECRET"])
    yield fleet
    fleet.close()


def documented_routes(fleet: Fleet) -> set[str]:
    response = fleet.http.get("/openapi.json", headers=_bearer(fleet.tokens["viewer"]))
    assert response.status_code == 200, response.text
    return {
        f"{method.upper()} {path}"
        for path, operations in response.json()["paths"].items()
        for method in operations
    }


def allowed(expected: str | int, status: int) -> bool:
    return 200 <= status < 400 if expected == OK else status == expected


def test_every_route_answers_every_caller_as_the_matrix_says(fleet):
    documented = documented_routes(fleet)
    unlisted = sorted(documented - MATRIX.keys())
    assert not unlisted, f"routes missing from MATRIX (decide who may call them): {unlisted}"
    gone = sorted(MATRIX.keys() - documented - NOT_DOCUMENTED)
    assert not gone, f"MATRIX lists routes the server does not document: {gone}"
    assert MATRIX.keys() == REQUESTS.keys()
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())

    wrong = []
    for route, row in MATRIX.items():
        for caller, expected in zip(CALLERS, row, strict=True):
            response = fleet.call(route, caller)
            if not allowed(expected, response.status_code):
                detail = response.text[:160].replace("\n", " ")
                wrong.append(
                    f"{route:58} {caller:12} expected {expected}, got "
                    f"{response.status_code}: {detail}"
                )
    assert not wrong, f"{len(wrong)} cells differ from MATRIX:\n" + "\n".join(wrong)

    # A cell the table cannot hold: the batch route is the worker's own, but a result in it
    # for another worker's job is judged as that job's route would judge it (403).
    owner, job_id = fleet.claimed_job()
    stranger = fleet.second
    batch = {"results": [{"job_id": job_id, **_result(stranger)}]}
    response = fleet.http.post(
        f"{V1}/edge/workers/{stranger.hostname}/results",
        json=batch,
        headers=_bearer(stranger.credential),
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcomes"][0]["status_code"] == 403, response.text
    assert fleet.admin.job(job_id)["state"] == "running"
