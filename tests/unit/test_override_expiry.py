"""Expiring operator concurrency: ``until`` on the set-concurrency change, and the sweep that
ends a due override as the server, once, even when two sweeps race."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from edgefleet.contract import Registration
from edgefleet.db.models import Worker
from edgefleet.server.services import dispatch, sweep, workers
from edgefleet.server.sweeper import MIN_PAUSE, Sweeper
from support import admin_token, auth_header

HOST = "w1"
FLAG = 2


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


@pytest.fixture
def instance(app) -> str:
    """``HOST`` registered with concurrency ``FLAG``; returns its instance id."""
    registration = Registration(
        instance_id=uuid.uuid4().hex, concurrency=FLAG, queues=["default"], heartbeat_interval=1
    )
    workers.register(app.state.context.db, HOST, registration, 5.0)
    return registration.instance_id


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def set_concurrency(app_client, admin, **change: Any):
    body = {"target": {"edge_hostname": HOST}, "change": {"action": "set-concurrency", **change}}
    return app_client.patch("/api/v1/workers", json=body, headers=admin)


def view(app_client, admin) -> dict[str, Any]:
    return app_client.get(f"/api/v1/workers/{HOST}", headers=admin).json()


def audit(app_client, admin) -> list[dict[str, Any]]:
    params = {"edge_hostname": HOST, "limit": 1000}
    rows = app_client.get("/api/v1/audit", params=params, headers=admin).json()
    return [{k: row[k] for k in ("actor", "field", "old", "new", "comment")} for row in rows]


def server_entries(app_client, admin) -> list[dict[str, Any]]:
    return [row for row in audit(app_client, admin) if row["actor"] == sweep.SERVER_ACTOR]


def ended_values(app_client, admin) -> list[dict[str, Any]]:
    """The server's entries for ended values (one per expiry)."""
    return [row for row in server_entries(app_client, admin) if row["field"] == "concurrency"]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"concurrency": 5, "until": "2030-01-01T18:00:00"}, 422, "timezone"),
        ({"concurrency": 5, "until": "tomorrow"}, 422, "until"),
        ({"concurrency": 5, "until": "2001-01-01T18:00:00+00:00"}, 400, "in the past"),
        ({"reset": True, "until": "2099-01-01T18:00:00Z"}, 400, "not with 'reset'"),
        ({"until": "2099-01-01T18:00:00Z"}, 400, "exactly one"),
    ],
)
def test_a_bad_until_is_refused_and_changes_nothing(
    instance, app_client, admin, change, status, message
):
    before = view(app_client, admin), audit(app_client, admin)
    response = set_concurrency(app_client, admin, **change)
    assert response.status_code == status, response.text
    assert message in response.text
    assert (view(app_client, admin), audit(app_client, admin)) == before


def test_until_is_stored_in_utc_shown_and_cleared_by_a_set_without_it(instance, app_client, admin):
    local = in_an_hour().replace(microsecond=0)
    offset = local.astimezone(timezone(timedelta(hours=-5)))
    answer = set_concurrency(app_client, admin, concurrency=5, until=offset.isoformat()).json()
    fields = {c["field"]: c["new"] for c in answer["changes"]}
    assert fields == {
        "concurrency": 5,
        "concurrency_source": "operator",
        "concurrency_until": local.isoformat(),
    }
    shown = view(app_client, admin)
    assert (shown["concurrency"], shown["concurrency_source"]) == (5, "operator")
    assert datetime.fromisoformat(shown["concurrency_until"]) == local

    # The same value again without an expiry: the old expiry goes, and that is a change.
    answer = set_concurrency(app_client, admin, concurrency=5).json()
    assert [(c["field"], c["new"]) for c in answer["changes"]] == [("concurrency_until", None)]
    assert view(app_client, admin)["concurrency_until"] is None


def test_the_per_worker_route_takes_until_and_reset_clears_it(instance, app_client, admin):
    until = in_an_hour().isoformat()
    body = {"concurrency": 3, "until": until}
    put = app_client.put(f"/api/v1/workers/{HOST}/concurrency", json=body, headers=admin)
    assert put.status_code == 200, put.text
    assert view(app_client, admin)["concurrency_until"] is not None
    app_client.delete(f"/api/v1/workers/{HOST}/concurrency", headers=admin)
    shown = view(app_client, admin)
    assert (shown["concurrency"], shown["concurrency_until"]) == (FLAG, None)
    with app_client.app.state.context.db() as session:
        assert session.get(Worker, HOST).concurrency_override_until is None
    # Nothing left for the sweep to expire later.
    later = datetime.now(UTC) + timedelta(hours=2)
    assert sweep.expire_overrides(app_client.app.state.context.db, later) == []


def test_the_sweep_ends_a_due_override_as_the_server(instance, app, app_client, admin):
    set_concurrency(app_client, admin, concurrency=5, until=in_an_hour().isoformat())
    set_by_operator = {row["field"]: row for row in audit(app_client, admin)}
    version = view(app_client, admin)["desired_version"]
    db = app.state.context.db
    assert sweep.expire_overrides(db, datetime.now(UTC)) == []  # not due yet

    later = datetime.now(UTC) + timedelta(hours=2)
    assert sweep.expire_overrides(db, later) == [HOST]
    shown = view(app_client, admin)
    assert shown["desired_version"] == version + 1
    assert (shown["concurrency"], shown["concurrency_source"]) == (FLAG, "flag")
    assert shown["concurrency_until"] is None
    # Written as the operator's change was: the value, its source and its end.
    ended = {row["field"]: row for row in server_entries(app_client, admin)}
    assert {field: (row["old"], row["new"]) for field, row in ended.items()} == {
        "concurrency": (5, FLAG),
        "concurrency_source": ("operator", "flag"),
        "concurrency_until": (set_by_operator["concurrency_until"]["new"], None),
    }
    assert {(row["actor"], row["comment"]) for row in ended.values()} == {
        ("server", "override expired")
    }
    assert sweep.expire_overrides(db, later) == []  # once


def test_an_expiry_is_written_once_when_two_sweeps_race(instance, app, app_client, admin):
    db = app.state.context.db
    set_concurrency(app_client, admin, concurrency=5, until=in_an_hour().isoformat())
    later = datetime.now(UTC) + timedelta(hours=2)
    # One sweep reads the due override, the other ends it before the first one writes.
    read_first = sweep.due_overrides(db, later)
    assert sweep.expire_overrides(db, later) == [HOST]
    assert sweep.expire_due(db, read_first, later) == []
    assert len(ended_values(app_client, admin)) == 1

    # And truly at once, from two threads.
    set_concurrency(app_client, admin, concurrency=6, until=in_an_hour().isoformat())
    start = threading.Barrier(2)
    results: list[list[str]] = []

    def race() -> None:
        start.wait()
        results.append(sweep.expire_overrides(db, later))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(len, results)) == [0, 1]
    assert len(ended_values(app_client, admin)) == 2


def test_an_operator_change_after_the_sweep_read_wins(instance, app, app_client, admin):
    db = app.state.context.db
    set_concurrency(app_client, admin, concurrency=5, until=in_an_hour().isoformat())
    later = datetime.now(UTC) + timedelta(hours=2)
    read = sweep.due_overrides(db, later)
    set_concurrency(app_client, admin, concurrency=7)  # no expiry now
    assert sweep.expire_due(db, read, later) == []
    shown = view(app_client, admin)
    assert (shown["concurrency"], shown["concurrency_until"]) == (7, None)
    assert server_entries(app_client, admin) == []


def _overdue(db) -> None:
    """As if the override's time had come and the sweep had not run yet."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with db.begin() as session:
        session.execute(
            update(Worker).where(Worker.hostname == HOST).values(concurrency_override_until=past)
        )


def test_an_overdue_override_is_gone_for_claims_before_the_sweep(instance, app, app_client, admin):
    db = app.state.context.db
    set_concurrency(app_client, admin, concurrency=1, until=in_an_hour().isoformat())
    _, desired = dispatch.claim(db, HOST, instance, free_slots=FLAG)
    assert desired.concurrency == 1
    # the worker is told what takes over at the end, to hand back on time if out of touch
    assert (desired.concurrency_after, desired.concurrency_after_source) == (FLAG, "flag")
    _overdue(db)
    _, desired = dispatch.claim(db, HOST, instance, free_slots=FLAG)
    assert (desired.concurrency, desired.concurrency_source) == (FLAG, "flag")
    assert (desired.concurrency_until, desired.concurrency_after) == (None, None)
    assert view(app_client, admin)["concurrency"] == FLAG


def test_the_sweeper_wakes_for_the_next_expiry(instance, app, app_client, admin):
    sweeper = Sweeper(app.state.context)
    sweeper.interval = 3600.0
    now = datetime.now(UTC)
    assert sweeper.pause(now) == sweeper.interval
    set_concurrency(
        app_client, admin, concurrency=5, until=(now + timedelta(minutes=1)).isoformat()
    )
    assert sweeper.pause(now) == pytest.approx(60.0)
    assert sweeper.pause(now + timedelta(hours=1)) == MIN_PAUSE  # overdue: at once


def test_explain_names_the_end_of_an_operators_value(instance, app, app_client, admin):
    until = in_an_hour().replace(microsecond=0)
    set_concurrency(app_client, admin, concurrency=1, until=until.isoformat())
    shown = app_client.get(f"/api/v1/workers/{HOST}/explain", headers=admin).json()
    assert datetime.fromisoformat(shown["concurrency_until"]) == until
    assert "ends by itself at" in shown["why"]
    operator = shown["layers"][0]
    assert (operator["layer"], operator["concurrency"], operator["in_force"]) == (
        "operator",
        1,
        True,
    )
    assert f"until {until:%Y-%m-%d %H:%M:%S} UTC" in operator["note"]
    _overdue(app.state.context.db)  # past its end, before the sweep: gone here too
    shown = app_client.get(f"/api/v1/workers/{HOST}/explain", headers=admin).json()
    assert (shown["concurrency"], shown["concurrency_source"]) == (FLAG, "flag")
    assert (shown["concurrency_until"], shown["layers"][0]["concurrency"]) == (None, None)
