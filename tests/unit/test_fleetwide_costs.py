"""A change to the whole fleet costs what one change costs, not one per worker: the change
reads plain rows and writes them in a few statements, and the long-polls it wakes are looked
at, told of their cancels and acknowledged in a few statements per group (counted)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from edgefleet.contract import ControlRequest, JobSubmit, Registration, WakeReason, WorkerState
from edgefleet.db.models import Worker
from edgefleet.server.services import control, dispatch, jobs, watch, workers
from edgefleet.server.services.workers import Ack

OFFLINE = 5.0


def register(db, hostname: str) -> str:
    instance = uuid.uuid4().hex
    reg = Registration(
        instance_id=instance, concurrency=2, queues=["default"], heartbeat_interval=1
    )
    workers.register(db, hostname, reg, OFFLINE)
    return instance


def fleet(db, size: int) -> dict[str, str]:
    """``size`` registered workers: hostname -> instance."""
    return {f"w{n:03d}": register(db, f"w{n:03d}") for n in range(size)}


@contextmanager
def counted(db) -> Iterator[list[str]]:
    """The SQL statements run from here on (an executemany counts once), and the ``Worker``
    objects the ORM loads, as ``load:<hostname>``."""
    seen: list[str] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement.split()[0].upper())

    def on_load(worker, context) -> None:
        seen.append(f"load:{worker.hostname}")

    event.listen(db.writer, "before_cursor_execute", on_execute)
    event.listen(Worker, "load", on_load)
    try:
        yield seen
    finally:
        event.remove(db.writer, "before_cursor_execute", on_execute)
        event.remove(Worker, "load", on_load)


def set_all(db, concurrency: int):
    request = {"target": {"all": True}, "change": {"action": "set-concurrency"}}
    request["change"]["concurrency"] = concurrency
    return control.change_workers(db, ControlRequest.model_validate(request), "op")


def test_a_fleet_wide_change_costs_the_same_statements_for_3_workers_as_for_40(
    session_factory,
):
    db = session_factory
    fleet(db, 40)
    with counted(db) as forty:
        answer = set_all(db, 3)
    assert len(answer.workers) == 40 and len(answer.changes) == 80
    assert not [s for s in forty if s.startswith("load:")]  # plain rows, no Worker objects

    with counted(db) as three:
        request = {"target": {"edge_hostname": "w00[012]"}, "change": {"action": "shutdown"}}
        control.change_workers(db, ControlRequest.model_validate(request), "op")
    assert len(forty) <= len(three) <= 5, (forty, three)  # a glob reads its candidates first


def woken_asks(db, hosts: dict[str, str], versions: dict[str, int]) -> list[watch.Ask]:
    """The long-polls a change woke, each back with the version it held before, one slot
    free of its 2 (so busy: it may have runs to cancel), acknowledging the new version."""
    return [
        watch.Ask(
            host,
            instance,
            versions[host] - 1,
            1,
            Ack(host, instance, versions[host], 3, WorkerState.RUNNING),
        )
        for host, instance in hosts.items()
    ]


def test_woken_long_polls_are_looked_at_and_acknowledged_in_statements_per_group(
    session_factory,
):
    db = session_factory
    hosts = fleet(db, 40)
    job = jobs.submit(db, JobSubmit(command=["true"], queue="default"), "tester")
    dispatch.claim(db, "w007", hosts["w007"], 1, seq=1)
    jobs.cancel(db, job, "op")
    versions = set_all(db, 3).versions

    def look(names: list[str]) -> tuple[list[str], list]:
        asks = woken_asks(db, {h: hosts[h] for h in names}, versions)
        with counted(db) as statements:
            return statements, watch.look_many(db, asks)

    first, rest = list(hosts)[:3], list(hosts)[3:]
    few, _ = look(first)
    many, looks = look(rest)
    assert len(many) <= len(few) + 5, (few, many)  # + taking the one worker's cancel

    assert {look.reason for look in looks} == {WakeReason.CHANGED}
    told = [
        (name, [c.id for c in look.cancel])
        for name, look in zip(rest, looks, strict=True)
        if look.cancel
    ]
    assert told == [("w007", [job])]
    shown = {w.hostname: w for w in workers.list_workers(db, OFFLINE, workers.WorkerFilter())}
    assert {h: shown[h].applied_version for h in hosts} == versions
    assert {shown[h].applied_concurrency for h in hosts} == {3}


def test_an_acknowledgement_already_recorded_is_not_written_again(session_factory):
    db = session_factory
    hosts = fleet(db, 2)
    versions = set_all(db, 3).versions
    watch.look_many(db, woken_asks(db, hosts, versions))
    with counted(db) as again:
        looks = watch.look_many(db, woken_asks(db, hosts, versions))
    assert [look.applied_version for look in looks] == [versions[h] for h in hosts]
    assert "UPDATE" not in again
