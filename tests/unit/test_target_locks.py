"""Resolving a control change's target (glob, selector, all) against a real database: the
right workers, in hostname order; on PostgreSQL only the matched rows are locked, so the
rest of the fleet keeps beating and claiming, and overlapping bulk changes never deadlock."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from edgefleet.contract import ControlRequest, Registration, SetConcurrency, Target
from edgefleet.db.models import Worker
from edgefleet.errors import NotFound
from edgefleet.server.services import control, targets, workers

FLEET = {
    "a-1": {"zone": "north", "topology.kubernetes.io/rack": "r1"},
    "a-2": {"zone": "south"},
    "a_3": {"zone": "north"},
    "ab-1": {},
    "b-1": {"zone": "north", "topology.kubernetes.io/rack": "r2"},
    "b-2": {"zone": "south"},
    "c-9": {},
}


def register(db, hostname: str, labels: dict[str, str]) -> None:
    reg = Registration(
        instance_id=uuid.uuid4().hex,
        concurrency=1,
        queues=["default"],
        heartbeat_interval=1,
        labels=labels,
    )
    workers.register(db, hostname, reg, 5.0)


@pytest.fixture
def fleet(session_factory):
    for hostname, labels in FLEET.items():
        register(session_factory, hostname, labels)
    return session_factory


def as_rows(session, target: Target):
    """``resolve_rows``, as a change reads them: plain rows, locked as ``resolve`` locks."""
    table = Worker.__table__
    return targets.resolve_rows(session, target, [table.c.hostname, table.c.labels])


#: Both ways a target is resolved: to ``Worker`` objects, and to plain rows.
each_resolver = pytest.mark.parametrize("resolve", [targets.resolve, as_rows], ids=["orm", "rows"])


def resolved(db, resolve, **target) -> list[str]:
    with db.begin() as session:
        return [w.hostname for w in resolve(session, Target(**target))]


CASES = [
    ({"edge_hostname": "a-*"}, ["a-1", "a-2"]),
    ({"edge_hostname": "a_*"}, ["a_3"]),  # '_' is no LIKE wildcard here
    ({"edge_hostname": "A-*"}, None),  # globs are case-sensitive
    ({"edge_hostname": "?-[12]"}, ["a-1", "a-2", "b-1", "b-2"]),
    ({"edge_hostname": "[!a]-*"}, ["b-1", "b-2", "c-9"]),
    ({"edge_hostname": "*1"}, ["a-1", "ab-1", "b-1"]),
    ({"selector": {"zone": "north"}}, ["a-1", "a_3", "b-1"]),
    ({"selector": {"zone": "north", "topology.kubernetes.io/rack": "r2"}}, ["b-1"]),
    ({"selector": {"zone": "west"}}, None),
    ({"all": True}, sorted(FLEET)),
]


@each_resolver
def test_globs_and_selectors_resolve_to_the_matching_workers_in_order(fleet, resolve):
    for target, expected in [*CASES, ({"edge_hostname": "b-2"}, ["b-2"])]:
        if expected is None:
            with pytest.raises(NotFound):
                resolved(fleet, resolve, **target)
        else:
            assert resolved(fleet, resolve, **target) == expected, target


@each_resolver
def test_a_worker_that_stops_matching_before_it_is_locked_is_left_out(fleet, monkeypatch, resolve):
    """The match is checked again on the locked rows."""
    read = targets._matched

    def relabel_between(session, target, *rest):
        with fleet.begin() as other:
            other.get(Worker, "a-1").labels = {"zone": "south"}
        return read(session, target, *rest)

    monkeypatch.setattr(targets, "_matched", relabel_between)
    assert resolved(fleet, resolve, selector={"zone": "north"}) == ["a_3", "b-1"]


# --- PostgreSQL: row locks ---------------------------------------------------------------

postgres_only = pytest.mark.skipif(
    not os.environ.get("EDGEFLEET_TEST_PG_URL"), reason="row locks need PostgreSQL"
)


def lockable_now(db, hostname: str) -> bool:
    """Whether another transaction could lock the worker's row right now (as a heartbeat or
    a claim does), without waiting."""
    with db.begin() as session:
        try:
            session.execute(
                select(Worker.hostname)
                .where(Worker.hostname == hostname)
                .with_for_update(nowait=True)
            ).one()
        except OperationalError as exc:
            assert "could not obtain lock" in str(exc)
            return False
    return True


@postgres_only
@each_resolver
def test_a_bulk_change_locks_only_the_workers_it_targets(fleet, resolve):
    for target in (
        {"edge_hostname": "a-*"},
        {"edge_hostname": "*-[12]"},
        {"selector": {"zone": "south"}},
    ):
        with fleet.begin() as session:
            locked = {w.hostname for w in resolve(session, Target(**target))}
            # ...the change's transaction is still open here.
            free = {hostname for hostname in FLEET if lockable_now(fleet, hostname)}
        assert locked and free == set(FLEET) - locked, target


@postgres_only
def test_overlapping_bulk_changes_all_land(fleet):
    """Threads changing overlapping sets of workers at once: every change lands, none
    deadlocks (each locks its rows in hostname order)."""
    changes = [
        {"edge_hostname": "*"},
        {"selector": {"zone": "north"}},
        {"edge_hostname": "?-*"},
        {"all": True},
        {"selector": {"zone": "south"}},
        {"edge_hostname": "[ab]*"},
    ]
    rounds = 5
    errors: list[BaseException] = []
    changed: list[int] = []  # workers each change changed

    def run(target: dict, offset: int) -> None:
        try:
            for n in range(rounds):
                request = SetConcurrency(**target, concurrency=2 + (offset + n) % 2)
                answer = control.change_workers(
                    fleet, ControlRequest.from_action("set-concurrency", request), f"op-{offset}"
                )
                changed.append(len({change.hostname for change in answer.changes}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = versions(fleet)
    threads = [threading.Thread(target=run, args=(t, i)) for i, t in enumerate(changes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(changed) == len(changes) * rounds
    # Each change bumped each worker it changed exactly once: none was lost or doubled.
    assert sum(changed) == sum(versions(fleet).values()) - sum(before.values())


def versions(db) -> dict[str, int]:
    with db() as session:
        return dict(session.execute(select(Worker.hostname, Worker.desired_version)).all())
