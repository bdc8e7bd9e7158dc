"""Every job-state transition from every state, against a real database: what each allowed
one leaves behind (state, attempt, history, wake-ups), and that each refused one changes
nothing. The multi-row paths (claim start, grouped successes) are held to the same guards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from edgefleet.contract import JobAssignment, JobResult, JobState
from edgefleet.db.models import Job, JobEvent
from edgefleet.db.session import make_engine, make_sessionmaker
from edgefleet.db.types import utcnow
from edgefleet.server.events import JobsQueued, WorkerChanged
from edgefleet.server.services import lifecycle
from edgefleet.server.services.lifecycle import TransitionRefused
from edgefleet.server.services.reports import ResultReport
from support.database import fresh_database, upgrade_database

Q, R, S, F, C = (JobState(s) for s in ("queued", "running", "success", "failed", "cancelled"))
REFUSED = "refused"
BACK = (JobsQueued("default"),)


def _start(connection, job: Job, now):
    run = JobAssignment(id=job.id, attempt=job.attempt + 1, command=job.command, queue="q", slots=1)
    lifecycle.start(connection, [run], "w2", 7, now)


def _succeed_fast(connection, job: Job, now):
    attempt = max(job.attempt, 1)
    result = JobResult(instance_id="i", attempt=attempt, state="success", exit_code=0)
    if lifecycle.succeed(connection, [ResultReport(job.id, "w1", result)], now)[0] == [False]:
        raise TransitionRefused("not recorded by the fast path")


#: On a connection (the multi-row statements) or a session (one job through the ORM).
FAST = {"start": _start, "succeed fast": _succeed_fast}
ORM = {
    "succeed": lambda s, job, now: lifecycle.finish(s, job, S, 0, None, now),
    "fail": lambda s, job, now: lifecycle.finish(s, job, F, 3, "boom", now),
    "report cancelled": lambda s, job, now: lifecycle.finish(s, job, C, -15, None, now),
    "release": lambda s, job, now: lifecycle.release(s, job, now),
    "lose": lambda s, job, now: lifecycle.lose(s, job, "worker gone", now),
    "refuse": lambda s, job, now: lifecycle.refuse(s, job, "unreadable", now),
    "cancel": lambda s, job, now: lifecycle.cancel(s, job, "op", now),
}


@dataclass(frozen=True)
class Case:
    action: str
    start: JobState
    #: The state after, or REFUSED.
    end: str
    event: str | None = None
    attempt: int | None = None
    wake: tuple = ()
    retries: int = 0
    cancel_asked: bool = False
    due_later: bool = False


ALLOWED = [
    Case("start", Q, "running", "started", attempt=1),
    Case("succeed fast", R, "success", "succeeded", attempt=1),
    Case("succeed", R, "success", "succeeded", attempt=1),
    Case("succeed", R, "success", "succeeded", attempt=1, cancel_asked=True),
    Case("fail", R, "failed", "failed", attempt=1),
    Case("fail", R, "queued", "failed", attempt=1, wake=BACK, retries=1),
    Case("fail", R, "cancelled", "cancelled", attempt=1, retries=1, cancel_asked=True),
    Case("report cancelled", R, "cancelled", "cancelled", attempt=1, retries=1),
    Case("release", R, "queued", "released", attempt=0, wake=BACK),
    Case("release", R, "cancelled", "cancelled", attempt=0, cancel_asked=True),
    Case("lose", R, "failed", "lost", attempt=1),
    Case("lose", R, "queued", "lost", attempt=1, wake=BACK, retries=1),
    Case("lose", R, "cancelled", "lost", attempt=1, retries=1, cancel_asked=True),
    Case("refuse", Q, "failed", "failed", attempt=0, retries=3),
    Case("refuse", R, "failed", "failed", attempt=1, retries=3),
    Case("cancel", Q, "cancelled", "cancelled", attempt=0),
    Case("cancel", R, "running", "cancel_requested", attempt=1, wake=(WorkerChanged("w1"),)),
    # Asked again: the worker is reminded, nothing is recorded twice.
    Case("cancel", R, "running", None, attempt=1, wake=(WorkerChanged("w1"),), cancel_asked=True),
    Case("cancel", C, "cancelled", None, attempt=1),
]
REFUSED_FROM = {
    "start": [R, S, F, C],
    "succeed fast": [Q, S, F, C],
    "succeed": [Q, S, F, C],
    "fail": [Q, S, F, C],
    "report cancelled": [Q, S, F, C],
    "release": [Q, S, F, C],
    "lose": [Q, S, F, C],
    "refuse": [S, F, C],
    "cancel": [S, F],
}
REFUSED_CASES = [
    Case(action, state, REFUSED, retries=1)
    for action, states in REFUSED_FROM.items()
    for state in states
] + [Case("start", Q, REFUSED, due_later=True)]  # a retry not yet due


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One database for the whole table: each case works on a job of its own."""
    with fresh_database(tmp_path_factory.mktemp("transitions")) as url:
        upgrade_database(url)
        engine = make_engine(url)
        yield make_sessionmaker(engine)
        engine.dispose()


def test_the_table_covers_every_transition_from_every_state():
    seen = [(case.action, case.start) for case in ALLOWED + REFUSED_CASES if not case.due_later]
    assert set(seen) == {(action, state) for action in FAST | ORM for state in JobState}
    allowed = {(c.action, c.start) for c in ALLOWED}
    assert not allowed & {(c.action, c.start) for c in REFUSED_CASES if not c.due_later}


def _make_job(db, case: Case) -> int:
    now = utcnow()
    held = case.start != Q
    with db.begin() as session:
        job = Job(
            command=["true"],
            queue="default",
            state=case.start.value,
            attempt=1 if held else 0,
            worker_hostname="w1" if held else None,
            started_at=now if held else None,
            finished_at=now if case.start in (S, F, C) else None,
            claim_seq=1 if held else None,
            retries=case.retries,
            retry_delay=0.0,
            not_before=now + timedelta(hours=1) if case.due_later else None,
            cancel_requested_at=now if case.cancel_asked else None,
        )
        session.add(job)
        session.flush()
        return job.id


def _act(db, action: str, job_id: int):
    now = utcnow()
    if action in FAST:
        with db.begin() as session:
            job = session.get(Job, job_id)
            session.expunge(job)
        with db.writer.begin() as connection:
            return FAST[action](connection, job, now)
    with db.begin() as session:
        return ORM[action](session, session.get(Job, job_id, with_for_update=True), now)


def _snapshot(db, job_id: int):
    with db() as session:
        job = session.get(Job, job_id)
        events = session.scalars(
            select(JobEvent.event).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
        row = (job.state, job.attempt, job.worker_hostname, job.cancel_requested_at is not None)
        return row, events


@pytest.mark.parametrize("case", ALLOWED, ids=lambda c: f"{c.action} from {c.start}")
def test_an_allowed_transition(db, case: Case):
    job_id = _make_job(db, case)
    _, before = _snapshot(db, job_id)
    wake = _act(db, case.action, job_id)
    (state, attempt, worker, asked), events = _snapshot(db, job_id)
    assert (state, attempt) == (case.end, case.attempt)
    assert events == before + ([case.event] if case.event else [])
    assert tuple(wake or ()) == case.wake
    if state == JobState.QUEUED:
        assert worker is None  # a queued job is nobody's
    if case.action == "start":
        assert worker == "w2"
    assert asked == (case.cancel_asked or case.event == "cancel_requested")


@pytest.mark.parametrize("case", REFUSED_CASES, ids=lambda c: f"{c.action} from {c.start}")
def test_a_refused_transition_changes_nothing(db, case: Case):
    job_id = _make_job(db, case)
    before = _snapshot(db, job_id)
    with pytest.raises(TransitionRefused):
        _act(db, case.action, job_id)
    assert _snapshot(db, job_id) == before


def test_a_refused_start_refuses_the_whole_claim(db):
    """The multi-row start is all or nothing: no run starts beside one the guard refuses."""
    queued = _make_job(db, Case("start", Q, "running"))
    finished = _make_job(db, Case("start", S, REFUSED))
    runs = [
        JobAssignment(id=job_id, attempt=2, command=["true"], queue="q", slots=1)
        for job_id in (queued, finished)
    ]
    with pytest.raises(TransitionRefused), db.writer.begin() as connection:
        lifecycle.start(connection, runs, "w2", 1, utcnow())
    assert _snapshot(db, queued) == (("queued", 0, None, False), [])
    assert _snapshot(db, finished) == (("success", 1, "w1", False), [])
