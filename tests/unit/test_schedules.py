"""Schedules (``/api/v1/schedules``): a window of concurrency between a worker's operator
override and the label rules, opened and closed by the sweep at times given here (the
server's own sweeper is held still, so only the tests' clock moves windows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgefleet.contract import Registration, ScheduleCreate
from edgefleet.db.models import AuditEntry
from edgefleet.server.services import schedules, sweep, workers
from edgefleet.server.sweeper import Sweeper
from support import admin_token, auth_header

SCHEDULES = "/api/v1/schedules"
FLEET = {"w1": {"site": "a", "zone": "1"}, "w2": {"site": "a"}, "w3": {"site": "b"}}
#: 22:30 UTC on a winter evening: a '0 22 * * *' window in UTC is open.
EVENING = datetime(2024, 1, 10, 22, 30, tzinfo=UTC)


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def fleet(app, monkeypatch) -> Any:
    monkeypatch.setattr(Sweeper, "start", lambda self: None)  # the tests move the clock
    for hostname, labels in FLEET.items():
        registration = Registration(
            instance_id=uuid.uuid4().hex,
            concurrency=2,
            queues=["default"],
            heartbeat_interval=1,
            labels=labels,
        )
        workers.register(app.state.context.db, hostname, registration, 5.0)
    return app.state.context.db


@pytest.fixture
def client(fleet, app_client):
    return app_client


def add(db, now: datetime = EVENING, actor: str = "alice", **fields: Any):
    body = {"cron": "0 22 * * *", "duration_seconds": 8 * 3600, "concurrency": 16, **fields}
    return schedules.add(db, ScheduleCreate(**body), actor, now=now).value


def in_force(client, admin) -> dict[str, tuple[int, str, str | None]]:
    rows = client.get("/api/v1/workers", headers=admin).json()
    return {
        r["hostname"]: (r["concurrency"], r["concurrency_source"], r["concurrency_schedule"])
        for r in rows
    }


def audit(db) -> list[AuditEntry]:
    with db() as session:
        return list(session.query(AuditEntry).order_by(AuditEntry.id))


def set_override(client, admin, hostname: str, **change: Any):
    change = {"action": "set-concurrency", **change}
    body = {"target": {"edge_hostname": hostname}, "change": change}
    assert client.patch("/api/v1/workers", json=body, headers=admin).is_success


def test_a_window_opens_and_closes_by_itself_above_the_label_rules(fleet, client, admin):
    db = fleet
    rule = {"selector": {"site": "a"}, "concurrency": 4}
    assert client.put("/api/v1/concurrency-rules", json=rule, headers=admin).is_success
    noon = EVENING.replace(hour=12)
    answer = add(db, now=noon, name="night", selector={"site": "a"})
    assert not answer.schedule.active and answer.changes.workers == []
    assert answer.schedule.next_start == EVENING.replace(minute=0)
    assert in_force(client, admin)["w1"] == (4, "label-rule", None)

    assert schedules.sweep_windows(db, noon) == []
    assert schedules.sweep_windows(db, EVENING) == ["w1", "w2"]
    assert in_force(client, admin) == {
        "w1": (16, "schedule", "night"),
        "w2": (16, "schedule", "night"),
        "w3": (2, "flag", None),
    }
    opened = audit(db)[-5:]
    assert [(e.actor, e.target, e.field) for e in opened] == [
        ("server", "schedule:night", "window"),
        ("server", "w1", "concurrency"),
        ("server", "w1", "concurrency_source"),
        ("server", "w2", "concurrency"),
        ("server", "w2", "concurrency_source"),
    ]
    assert "night" in opened[0].comment and "2024-01-11 06:00:00 UTC" in opened[0].comment
    assert opened[1].comment == "schedule night: window open, concurrency 16"

    # Another replica sweeping the same moment, or this one again, finds nothing to do.
    count = len(audit(db))
    assert schedules.sweep_windows(db, EVENING + timedelta(seconds=5)) == []
    assert len(audit(db)) == count

    morning = EVENING.replace(day=11, hour=6, minute=0)
    assert schedules.sweep_windows(db, morning - timedelta(seconds=1)) == []
    assert schedules.sweep_windows(db, morning) == ["w1", "w2"]
    assert in_force(client, admin)["w1"] == (4, "label-rule", None)
    closed = audit(db)[count:]
    assert (closed[0].actor, closed[0].target, closed[0].new_value) == (
        "server",
        "schedule:night",
        '"closed"',
    )
    assert closed[1].comment == (
        "schedule night: window closed; now in force: label rule site=a (4)"
    )
    assert schedules.sweep_windows(db, morning + timedelta(minutes=1)) == []


def test_a_hand_change_during_a_window_wins_until_it_is_reset(fleet, client, admin):
    db = fleet
    add(db, name="night", selector={"site": "a"})  # open now: applied at once
    assert in_force(client, admin)["w2"] == (16, "schedule", "night")
    set_override(client, admin, "w2", concurrency=3)
    assert in_force(client, admin)["w2"] == (3, "operator", None)
    # The window starting again the next night does not undo the hand change either.
    assert schedules.sweep_windows(db, EVENING + timedelta(days=1)) == []
    assert in_force(client, admin)["w2"] == (3, "operator", None)
    set_override(client, admin, "w2", reset=True)
    assert in_force(client, admin)["w2"] == (16, "schedule", "night")


def test_an_override_that_expires_during_a_window_hands_back_to_the_window(fleet, client, admin):
    db = fleet
    add(db, name="night", selector={"site": "a"}, now=datetime.now(UTC) - timedelta(hours=1),
        cron="* * * * *", duration_seconds=3 * 3600)  # fmt: skip
    until = datetime.now(UTC) + timedelta(minutes=5)
    set_override(client, admin, "w2", concurrency=3, until=until.isoformat())
    assert in_force(client, admin)["w2"] == (3, "operator", None)
    assert sweep.expire_overrides(db, until) == ["w2"]
    assert in_force(client, admin)["w2"] == (16, "schedule", "night")


def test_the_most_specific_window_wins_then_the_latest_start(fleet, client, admin):
    db = fleet
    add(db, name="all-evening", all=True, cron="0 20 * * *", concurrency=5)
    add(db, name="site-a", selector={"site": "a"}, cron="0 21 * * *", concurrency=6)
    add(db, name="zone-1", selector={"zone": "1"}, cron="0 22 * * *", concurrency=7)
    assert in_force(client, admin) == {
        "w1": (7, "schedule", "zone-1"),  # one key, like site-a, but started later
        "w2": (6, "schedule", "site-a"),
        "w3": (5, "schedule", "all-evening"),
    }
    add(db, name="both", selector={"zone": "1", "site": "a"}, cron="0 18 * * *", concurrency=8)
    assert in_force(client, admin)["w1"] == (8, "schedule", "both")  # two keys
    schedules.remove(db, "both", "alice", now=EVENING)
    assert in_force(client, admin)["w1"] == (7, "schedule", "zone-1")
    explained = client.get("/api/v1/workers/w1/explain", headers=admin).json()
    assert explained["concurrency_schedule"] == "zone-1"
    rows = {row["layer"]: row for row in explained["layers"]}
    assert rows["schedule"]["in_force"] and rows["schedule"]["rule"] == "zone-1"
    assert "also open: site-a (6), all-evening (5)" in rows["schedule"]["note"]
    assert [r["layer"] for r in explained["layers"]][:2] == ["operator", "schedule"]


def test_the_api_adds_lists_and_removes_with_audit(fleet, client, admin):
    body = {
        "selector": {"site": "b"},
        "cron": "0 22 * * 1-5",
        "timezone": "Europe/Berlin",
        "duration_seconds": 3600,
        "concurrency": 9,
    }
    added = client.post(SCHEDULES, json=body, headers=admin)
    assert added.status_code == 201, added.text
    assert added.json()["schedule"]["name"] == "b"  # from the selector's values
    again = client.post(SCHEDULES, json=body, headers=admin).json()["schedule"]["name"]
    assert again == "b-2"
    listed = client.get(SCHEDULES, headers=admin).json()
    assert [(s["name"], s["timezone"], s["all"]) for s in listed] == [
        ("b", "Europe/Berlin", False),
        ("b-2", "Europe/Berlin", False),
    ]
    local = datetime.fromisoformat(listed[0]["next_start_local"])
    assert (local.hour, local.minute) == (22, 0) and local.utcoffset() in (
        timedelta(hours=1),
        timedelta(hours=2),
    )
    assert datetime.fromisoformat(listed[0]["next_start"]) == local
    removed = client.delete(f"{SCHEDULES}/b", headers=admin)
    assert removed.is_success and removed.json()["removed"]
    assert client.delete(f"{SCHEDULES}/b", headers=admin).status_code == 404
    entries = [e for e in audit(fleet) if e.target == "schedule:b"]
    assert [(e.field, e.old_value is None, e.new_value is None) for e in entries] == [
        ("schedule", True, False),
        ("schedule", False, True),
    ]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"timezone": "Europe/Nowhere"}, 400, "unknown time zone"),
        ({"cron": "0 25 * * *"}, 400, "bad cron expression"),
        ({"cron": "0 22 * *"}, 400, "five fields"),
        ({"duration_seconds": 0}, 422, "duration_seconds"),
        ({"concurrency": 0}, 422, "concurrency"),
        ({"selector": {}}, 400, "empty selector"),
        ({"selector": None}, 400, "exactly one"),
        ({"all": True}, 400, "exactly one"),
        # the syntax in words, not the regular expression
        ({"name": "bad name"}, 422, "not allowed here: use letters, digits, '_', '.' or '-'"),
        ({"name": "taken"}, 409, "already"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(fleet, client, admin, change, status, says):
    add(fleet, name="taken", selector={"site": "zz"})
    before = (in_force(client, admin), len(audit(fleet)))
    body = {
        "selector": {"site": "a"},
        "cron": "0 22 * * *",
        "duration_seconds": 3600,
        "concurrency": 9,
        **change,
    }
    body = {key: value for key, value in body.items() if value is not None}
    response = client.post(SCHEDULES, json=body, headers=admin)
    assert response.status_code == status, response.text
    assert says in response.text
    assert (in_force(client, admin), len(audit(fleet))) == before
    assert [s["name"] for s in client.get(SCHEDULES, headers=admin).json()] == ["taken"]


def test_the_sweeper_wakes_at_the_next_boundary(app, fleet):
    db = fleet
    sweeper = Sweeper(app.state.context)
    assert sweeper.pause(EVENING) == sweeper.interval  # no schedule
    add(db, name="soon", all=True, cron="31 22 * * *", duration_seconds=60)
    assert sweeper.pause(EVENING + timedelta(seconds=59, microseconds=500_000)) == 0.5


@pytest.mark.parametrize(
    ("target", "name"),
    [({"selector": {"zone": "ü"}}, "zone"), ({"selector": {"k": ""}}, "k"), ({"all": True}, "all")],
)
def test_a_name_never_reads_as_every_worker_unless_it_is(fleet, client, admin, target, name):
    """A selector whose values give no usable character is named from its keys."""
    body = {**target, "cron": "0 22 * * *", "duration_seconds": 60, "concurrency": 2}
    added = client.post(SCHEDULES, json=body, headers=admin)
    assert added.status_code == 201, added.text
    assert added.json()["schedule"]["name"] == name
