"""A change to the whole fleet costs what one change costs, not one per worker: the change
reads plain rows (only the columns it needs) and writes them in a few statements, works out
once what workers of the same settings get, and the long-polls it wakes are looked at, told of
their cancels and acknowledged in a few statements per group (counted)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event

from edgefleet.contract import ControlRequest, JobSubmit, Registration, WakeReason, WorkerState
from edgefleet.db.models import Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict
from edgefleet.server.services import control, dispatch, jobs, watch, workers
from edgefleet.server.services.workers import Ack
from support import statements_run

OFFLINE = 5.0


def register(db, hostname: str, concurrency: int = 2, **more) -> str:
    instance = uuid.uuid4().hex
    reg = Registration(
        instance_id=instance,
        concurrency=concurrency,
        queues=more.pop("queues", ["default"]),
        heartbeat_interval=1,
        **more,
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


def set_all(db, concurrency: int, per_cpu: float = 0.0, **change):
    request = {"target": {"all": True}, "change": {"action": "set-concurrency", **change}}
    request["change"]["concurrency"] = concurrency
    return control.change_workers(db, ControlRequest.model_validate(request), "op", per_cpu)


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


def test_a_fleet_wide_change_reads_the_cpus_only_when_a_value_may_be_refused(session_factory):
    db = session_factory
    fleet(db, 3)

    def reads(concurrency: int) -> str:
        with statements_run(db.writer) as run:
            set_all(db, concurrency, per_cpu=2.0)
        return next(s for s in run if s.lstrip().upper().startswith("SELECT"))

    within = reads(2)  # no worker reporting a CPU or more is refused 2 at 2 per CPU
    assert "sysinfo" not in within and "labels" not in within
    assert "sysinfo" in reads(3)


def test_workers_get_their_own_change_whatever_others_of_the_same_settings_got(
    session_factory,
):
    """The change is worked out once per distinct settings: each worker still gets its own
    old values, version, audit rows and wake-up, and its own CPU check."""
    db = session_factory
    for name in ("a1", "a2"):
        register(db, name, sysinfo={"cpus": 8})
    register(db, "b", concurrency=4, queues=["gpu"], sysinfo={"cpus": 8})
    register(db, "c", sysinfo={"cpus": 8})
    register(db, "d", sysinfo={"cpus": True})  # not a count: not checked
    set_all(db, 1)
    until = utcnow() + timedelta(hours=1)
    change_one(db, "c", {"action": "set-concurrency", "concurrency": 5, "until": until})
    change_one(db, "d", {"action": "set-concurrency", "concurrency": 3})
    before = {w.hostname: w.desired_version for w in listed(db)}

    answer = set_all(db, 3, per_cpu=1.0)

    changed = {(c.hostname, c.field): (c.old, c.new, c.desired_version) for c in answer.changes}
    assert changed == {
        ("a1", "concurrency"): (1, 3, before["a1"] + 1),
        ("a2", "concurrency"): (1, 3, before["a2"] + 1),
        ("b", "concurrency"): (1, 3, before["b"] + 1),
        ("c", "concurrency"): (5, 3, before["c"] + 1),
        ("c", "concurrency_until"): (until.isoformat(), None, before["c"] + 1),
    }
    assert answer.versions == {**before, **{h: before[h] + 1 for h in ("a1", "a2", "b", "c")}}
    logged = control.list_audit(db, None, None, 100)[: len(changed)]
    assert {(e.target, e.field): (e.old, e.new) for e in logged} == {
        key: (old, new) for key, (old, new, _) in changed.items()
    }
    woken = {e.hostname: e.desired for e in control.wake_ups(answer)}
    assert {h: (d.version, d.concurrency, d.queues) for h, d in woken.items()} == {
        "a1": (before["a1"] + 1, 3, ["default"]),
        "a2": (before["a2"] + 1, 3, ["default"]),
        "b": (before["b"] + 1, 3, ["gpu"]),
        "c": (before["c"] + 1, 3, ["default"]),
    }


def test_the_cpu_check_is_each_workers_own_and_refuses_the_whole_change(session_factory):
    db = session_factory
    register(db, "a", sysinfo={"cpus": 8})
    register(db, "b", sysinfo={"cpus": 1})  # the same settings as a, but one CPU
    register(db, "c", sysinfo={"cpus": True})
    before = {w.hostname: w.desired_version for w in listed(db)}
    with pytest.raises(Conflict, match="'b'"):
        set_all(db, 3, per_cpu=2.0)
    assert {w.hostname: w.desired_version for w in listed(db)} == before
    assert control.list_audit(db, None, None, 10) == []
    assert set(set_all(db, 3, per_cpu=2.0, force=True).versions) == {"a", "b", "c"}


def change_one(db, hostname: str, change: dict) -> None:
    request = {"target": {"edge_hostname": hostname}, "change": change}
    control.change_workers(db, ControlRequest.model_validate(request), "op")


def listed(db) -> list:
    return workers.list_workers(db, OFFLINE, workers.WorkerFilter())


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
