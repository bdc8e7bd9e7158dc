"""``PATCH /api/v1/workers``: one change to the desired state of the targeted workers, the one
handler behind every control route (the one-action routes answer exactly as it does)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edgefleet.contract import Registration
from edgefleet.server.services import workers
from support import admin_token, auth_header
from support.api import ADMIN_SUBJECT

#: Every kind of change, in an order in which each one changes something, with the fields it
#: changes (old, new) on a worker started with ``--concurrency 2 --queues default``.
STEPS: list[tuple[dict[str, Any], dict[str, tuple[Any, Any]], str | None]] = [
    (
        {"action": "set-concurrency", "concurrency": 5},
        {"concurrency": (2, 5), "concurrency_source": ("flag", "operator")},
        None,
    ),
    (
        {"action": "set-concurrency", "reset": True},
        {"concurrency": (5, 2), "concurrency_source": ("operator", "flag")},
        None,
    ),
    (
        {"action": "add-queues", "queues": ["gpu"]},
        {"queues": (["default"], ["default", "gpu"])},
        None,
    ),
    (
        {"action": "remove-queues", "queues": ["default"]},
        {"queues": (["default", "gpu"], ["gpu"])},
        None,
    ),
    (
        {"action": "reset-queues"},
        {"queues": (["gpu"], ["default"])},
        "handed back to the worker's flag",
    ),
    (
        {"action": "request-maintenance", "comments": "disk swap"},
        {"maintenance": (False, True), "maintenance_comment": (None, "disk swap")},
        "disk swap",
    ),
    (
        {"action": "update-maintenance-comment", "comments": "disk swap, part two"},
        {"maintenance_comment": ("disk swap", "disk swap, part two")},
        "disk swap, part two",
    ),
    (
        {"action": "exit-maintenance"},
        {"maintenance": (True, False), "maintenance_comment": ("disk swap, part two", None)},
        None,
    ),
    ({"action": "shutdown"}, {"shutdown": (False, True)}, None),
]

FLEET = {"w1": {"site": "a"}, "w2": {"site": "a"}, "w3": {"site": "b"}}


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def fleet(app, app_client) -> None:
    """Three registered workers, each with concurrency 2 and the queue ``default``."""
    for hostname, labels in FLEET.items():
        registration = Registration(
            instance_id=uuid.uuid4().hex,
            concurrency=2,
            queues=["default"],
            heartbeat_interval=1,
            labels=labels,
        )
        workers.register(app.state.context.db, hostname, registration, 5.0)


def patch(app_client, admin, target: dict[str, Any], change: dict[str, Any]):
    body = {"target": target, "change": change}
    return app_client.patch("/api/v1/workers", json=body, headers=admin)


def versions(app_client, admin) -> dict[str, int]:
    rows = app_client.get("/api/v1/workers", headers=admin).json()
    return {row["hostname"]: row["desired_version"] for row in rows}


def audit(app_client, admin, hostname: str) -> list[dict[str, Any]]:
    """The worker's audit rows, oldest first, without their ids and times."""
    params = {"edge_hostname": hostname, "limit": 1000}
    rows = app_client.get("/api/v1/audit", params=params, headers=admin).json()
    return [
        {key: row[key] for key in ("actor", "field", "old", "new", "comment")}
        for row in reversed(rows)
    ]


def test_each_kind_of_change_is_applied_audited_and_versioned(fleet, app_client, admin):
    version = versions(app_client, admin)["w1"]
    for change, fields, comment in STEPS:
        response = patch(app_client, admin, {"edge_hostname": "w1"}, change)
        assert response.status_code == 200, (change, response.text)
        version += 1
        answer = response.json()
        assert answer["workers"] == ["w1"] and answer["versions"] == {"w1": version}
        got = {c["field"]: (c["old"], c["new"]) for c in answer["changes"]}
        assert got == {name: tuple(pair) for name, pair in fields.items()}, change
        assert {c["desired_version"] for c in answer["changes"]} == {version}
        rows = audit(app_client, admin, "w1")[-len(fields) :]
        assert [(r["field"], r["old"], r["new"]) for r in rows] == [
            (name, *pair) for name, pair in fields.items()
        ]
        assert {(r["actor"], r["comment"]) for r in rows} == {(ADMIN_SUBJECT, comment)}
    view = app_client.get("/api/v1/workers/w1", headers=admin).json()
    assert view["desired_version"] == version
    assert versions(app_client, admin)["w2"] == version - len(STEPS)  # untouched


def one_action_route(hostname: str, change: dict[str, Any]) -> tuple[str, str, Any]:
    """The same change through the route of its own action (as the web UI sends it)."""
    fields = {key: value for key, value in change.items() if key != "action"}
    if change["action"] == "set-concurrency" and "reset" in fields:
        return "DELETE", f"/api/v1/workers/{hostname}/concurrency", None
    if change["action"] == "set-concurrency":
        return "PUT", f"/api/v1/workers/{hostname}/concurrency", fields
    body = {"edge_hostname": hostname, **fields}
    return "POST", f"/api/v1/workers/actions/{change['action']}", body


def test_the_one_action_routes_answer_as_the_patch_does(fleet, app_client, admin):
    for change, _fields, _comment in STEPS:
        by_patch = patch(app_client, admin, {"edge_hostname": "w1"}, change)
        method, path, body = one_action_route("w2", change)
        by_route = app_client.request(method, path, json=body, headers=admin)
        assert by_patch.status_code == by_route.status_code == 200, (change, by_route.text)
        assert by_route.json() == _renamed(by_patch.json(), "w1", "w2")
    assert audit(app_client, admin, "w2") == audit(app_client, admin, "w1")
    flat = {"edge_hostname": "w3", "concurrency": 4}
    by_flat = app_client.post("/api/v1/workers/actions/set-concurrency", json=flat, headers=admin)
    assert by_flat.json()["changes"][0]["new"] == 4


def _renamed(answer: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {
        "workers": [new if h == old else h for h in answer["workers"]],
        "changes": [{**c, "hostname": new} for c in answer["changes"]],
        "versions": {new if h == old else h: v for h, v in answer["versions"].items()},
    }


def test_a_selector_or_all_changes_every_matched_worker_at_once(fleet, app_client, admin):
    before = versions(app_client, admin)
    change = {"action": "set-concurrency", "concurrency": 3}
    answer = patch(app_client, admin, {"selector": {"site": "a"}}, change).json()
    assert answer["workers"] == ["w1", "w2"]
    assert answer["versions"] == {"w1": before["w1"] + 1, "w2": before["w2"] + 1}
    assert versions(app_client, admin)["w3"] == before["w3"]

    answer = patch(app_client, admin, {"all": True}, change).json()
    assert answer["workers"] == ["w1", "w2", "w3"]
    assert [c["hostname"] for c in answer["changes"]] == ["w3", "w3"]  # the others had 3


def on_w1(change: dict[str, Any]) -> dict[str, Any]:
    return {"target": {"edge_hostname": "w1"}, "change": change}


def shutdown_of(target: dict[str, Any]) -> dict[str, Any]:
    return {"target": target, "change": {"action": "shutdown"}}


#: (body, status, what the error says): each refused with nothing changed.
BAD = [
    ({"change": {"action": "shutdown"}}, 422, "target"),
    ({"target": {"edge_hostname": "w1"}}, 422, "change"),
    ({"edge_hostname": "w1", "concurrency": 3}, 422, "target"),  # an action route's body
    (on_w1({"action": "reboot"}), 422, "action"),
    (on_w1({"concurrency": 3}), 422, "action"),
    (on_w1({"action": "set-concurrency"}), 400, "exactly one"),
    (on_w1({"action": "set-concurrency", "concurrency": 3, "reset": True}), 400, "exactly one"),
    (on_w1({"action": "set-concurrency", "concurrency": 0}), 422, "concurrency"),
    (on_w1({"action": "set-concurrency", "concurrency": "3"}), 422, "concurrency"),
    (on_w1({"action": "add-queues"}), 422, "queues"),
    (on_w1({"action": "add-queues", "queues": []}), 422, "queues"),
    (on_w1({"action": "shutdown", "comments": "why"}), 422, "comments"),
    (on_w1({"action": "request-maintenance"}), 422, "comments"),
    (on_w1({"action": "update-maintenance-comment", "comments": "x"}), 409, "not in maintenance"),
    (on_w1({"action": "remove-queues", "queues": ["gpu"]}), 400, "serves gpu"),
    (
        {
            "target": {"edge_hostname": "w*"},
            "change": {"action": "remove-queues", "queues": ["default"]},
        },
        400,
        "no queue",
    ),
    (shutdown_of({"edge_hostname": "nope"}), 404, "no worker named"),
    (shutdown_of({"edge_hostname": "x-*"}), 404, "no worker matches"),
    (shutdown_of({"edge_hostname": "w[1"}), 400, "never closed"),
    (shutdown_of({"selector": {}}), 400, "empty selector"),
    (shutdown_of({"edge_hostname": "w1", "all": True}), 400, "exactly one target"),
    (shutdown_of({}), 400, "exactly one target"),
]


def test_bad_requests_are_refused_and_change_nothing(fleet, app_client, admin):
    """One fleet for every case: each is refused, so each finds the fleet as it was."""
    # w1 serves two queues: removing 'default' from w* would suit it, but not w2 and w3.
    added = patch(
        app_client, admin, {"edge_hostname": "w1"}, {"action": "add-queues", "queues": ["io"]}
    )
    assert added.status_code == 200, added.text
    before = versions(app_client, admin), audit(app_client, admin, "w1")
    for body, status, message in BAD:
        response = app_client.patch("/api/v1/workers", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        assert message in response.text, (body, response.text)
        assert set(response.json()) >= {"error", "detail"}, body
        assert (versions(app_client, admin), audit(app_client, admin, "w1")) == before, body
