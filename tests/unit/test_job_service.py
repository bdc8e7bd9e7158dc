"""The job services against a real database: idempotent fetches and reports, the attempt
fence, cancel, lost runs, the log cap, retention and the history they all write."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from edgefleet.contract import (
    Heartbeat,
    JobCancel,
    JobRelease,
    JobResult,
    JobSubmit,
    LogChunk,
    Registration,
)
from edgefleet.db.models import Job, JobEvent, JobLogChunk, Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, PayloadTooLarge
from edgefleet.server.events import JobsQueued, WorkerChanged
from edgefleet.server.services import dispatch, heartbeats, jobs, sweep, workers

OFFLINE = 5.0


def register(
    db, hostname: str = "w1", concurrency: int = 4, queues=("default",), replaces=None
) -> str:
    """Register a worker process; ``replaces`` names the process it succeeds (a restart)."""
    instance = uuid.uuid4().hex
    reg = Registration(
        instance_id=instance,
        replaces=replaces,
        concurrency=concurrency,
        queues=list(queues),
        heartbeat_interval=1,
    )
    workers.register(db, hostname, reg, OFFLINE)
    return instance


def submit(db, **fields) -> int:
    return jobs.submit(db, JobSubmit(command=["true"], **fields), "tester")


def result(instance: str, attempt: int, state: str = "success", code: int | None = 0):
    return JobResult(instance_id=instance, attempt=attempt, state=state, exit_code=code)


def events(db, job_id: int) -> list[tuple[str, str, int]]:
    return [(e.event, e.state, e.attempt) for e in jobs.get_job(db, job_id).history]


def test_a_fetch_repeated_with_the_same_seq_gets_the_same_jobs(session_factory):
    db = session_factory
    instance = register(db)
    ids = [submit(db) for _ in range(3)]
    first, _ = dispatch.claim(db, "w1", instance, 2, seq=1)
    again, _ = dispatch.claim(db, "w1", instance, 2, seq=1)  # the answer was lost
    assert [a.id for a in first] == [a.id for a in again] == ids[:2]
    assert [a.attempt for a in again] == [1, 1]
    nxt, _ = dispatch.claim(db, "w1", instance, 2, seq=2)
    assert [a.id for a in nxt] == ids[2:]
    stale, _ = dispatch.claim(db, "w1", instance, 2, seq=1)  # a late copy of an old fetch
    assert stale == []
    assert [events(db, i)[-1][0] for i in ids] == ["started"] * 3


def test_a_new_process_numbers_its_fetches_afresh(session_factory):
    db = session_factory
    old = register(db)
    dispatch.claim(db, "w1", old, 1, seq=7)
    new = register(db, replaces=old)  # a restart: the new process starts at seq 1
    job = submit(db)
    claimed, _ = dispatch.claim(db, "w1", new, 1, seq=1)
    assert [a.id for a in claimed] == [job]


def test_reports_are_idempotent_per_attempt(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    assert dispatch.report_result(db, job, "w1", result(instance, 1)).wake == ()
    dispatch.report_result(db, job, "w1", result(instance, 1))  # retried: nothing changes
    view = jobs.get_job(db, job)
    assert (view.state, view.exit_code) == ("success", 0)
    assert [e.event for e in view.history] == ["submitted", "started", "succeeded"]
    with pytest.raises(Conflict):  # the same attempt cannot end differently
        dispatch.report_result(db, job, "w1", result(instance, 1, "failed", 1))


def test_a_retried_report_after_the_job_moved_on_changes_nothing(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db, retries=1, retry_delay=0)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    failed = result(instance, 1, "failed", 2)
    assert dispatch.report_result(db, job, "w1", failed).wake == (JobsQueued("default"),)
    dispatch.claim(db, "w1", instance, 1, seq=2)
    dispatch.report_result(db, job, "w1", failed)  # the first report, sent again
    view = jobs.get_job(db, job)
    assert (view.state, view.attempt) == ("running", 2)
    assert [e.event for e in view.history].count("failed") == 1


def test_retries_back_off_and_then_fail(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db, retries=1, retry_delay=60)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    dispatch.report_result(db, job, "w1", result(instance, 1, "failed", 1))
    view = jobs.get_job(db, job)
    assert view.state == "queued" and view.not_before > utcnow() + timedelta(seconds=50)
    assert view.waiting_reason.startswith("attempt 2 of 2 is due at")
    assert "retrying in" in view.reason
    assert dispatch.claim(db, "w1", instance, 1, seq=2)[0] == []  # not due yet
    with db.begin() as session:
        session.get(Job, job).not_before = utcnow() - timedelta(seconds=1)
    (again,) = dispatch.claim(db, "w1", instance, 1, seq=3)[0]
    assert again.attempt == 2
    dispatch.report_result(db, job, "w1", result(instance, 2, "failed", 1))
    view = jobs.get_job(db, job)
    assert (view.state, view.attempt, view.exit_code) == ("failed", 2, 1)
    assert "no retries left" in view.reason


def test_a_result_for_a_requeued_attempt_is_refused_and_noted(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db, retries=1)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    with db.begin() as session:  # silent past the offline timeout
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=60)
        session.get(Job, job).started_at = utcnow() - timedelta(seconds=60)
    (lost,) = sweep.requeue_lost(db, OFFLINE, utcnow())
    assert (lost.job_id, lost.attempt, lost.requeued) == (job, 1, True)
    assert sweep.requeue_lost(db, OFFLINE, utcnow()) == []  # idempotent
    other = register(db, "w2")
    (second,) = dispatch.claim(db, "w2", other, 1, seq=1)[0]
    assert second.attempt == 2
    with pytest.raises(Conflict, match="no longer held"):
        dispatch.report_result(db, job, "w1", result(instance, 1))
    with pytest.raises(Conflict):
        dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=0, data="late"))
    dispatch.report_result(db, job, "w2", result(other, 2))
    history = events(db, job)
    assert [e[0] for e in history] == [
        "submitted",
        "started",
        "lost",
        "started",
        "late_result_refused",
        "succeeded",
    ]
    assert history[-1] == ("succeeded", "success", 2)


def test_a_worker_that_still_claims_jobs_is_not_counted_offline(session_factory):
    db = session_factory
    instance = register(db)
    first, second = submit(db), submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    with db.begin() as session:  # heartbeats starved...
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=60)
        session.get(Job, first).started_at = utcnow() - timedelta(seconds=60)
    dispatch.claim(db, "w1", instance, 1, seq=2)  # ...but it just fetched again
    assert sweep.requeue_lost(db, OFFLINE, utcnow()) == []
    with db.begin() as session:
        session.get(Job, second).started_at = utcnow() - timedelta(seconds=60)
    assert sorted(run.job_id for run in sweep.requeue_lost(db, OFFLINE, utcnow())) == [
        first,
        second,
    ]


def test_a_lost_run_of_a_cancelled_job_ends_cancelled(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db, retries=3)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    jobs.cancel(db, job, "op")
    with db.begin() as session:
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=60)
        session.get(Job, job).started_at = utcnow() - timedelta(seconds=60)
    (run,) = sweep.requeue_lost(db, OFFLINE, utcnow())
    assert not run.requeued
    view = jobs.get_job(db, job)
    assert view.state == "cancelled" and view.history[-1].event == "lost"


def test_a_lost_run_without_retries_fails_with_the_reason(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    with db.begin() as session:
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=60)
        session.get(Job, job).started_at = utcnow() - timedelta(seconds=60)
    sweep.requeue_lost(db, OFFLINE, utcnow())
    view = jobs.get_job(db, job)
    assert view.state == "failed"
    assert "worker w1 went offline" in view.reason and "attempt 1" in view.reason


def test_a_restarted_worker_loses_what_its_predecessor_did_not_report(session_factory):
    db = session_factory
    old = register(db)
    job = submit(db, retries=2)
    dispatch.claim(db, "w1", old, 1, seq=1)
    register(db, replaces=old)  # a new process of the same worker (after a crash)
    view = jobs.get_job(db, job)
    assert (view.state, view.attempt) == ("queued", 1)
    assert view.history[-1].event == "lost"
    assert "restarted" in view.history[-1].reason


def test_release_is_fenced_by_the_claims_seq(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    dispatch.release(db, job, "w1", JobRelease(instance_id=instance, attempt=1, seq=1))
    dispatch.claim(db, "w1", instance, 1, seq=2)  # claimed again, same attempt number
    with pytest.raises(Conflict):  # a late copy of the first hand-back
        dispatch.release(db, job, "w1", JobRelease(instance_id=instance, attempt=1, seq=1))
    view = jobs.get_job(db, job)
    assert (view.state, view.attempt) == ("running", 1)
    assert [e.event for e in view.history] == ["submitted", "started", "released", "started"]


def test_cancel_queued_running_and_finished_jobs(session_factory):
    db = session_factory
    instance = register(db)
    running, queued, done = submit(db), submit(db), submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    cancelled = jobs.cancel(db, queued, "op")
    assert (cancelled.value.state, cancelled.wake) == ("cancelled", ())
    assert jobs.cancel(db, queued, "op").value.state == "cancelled"  # again: no change

    asked = jobs.cancel(db, running, "op")
    view = asked.value
    assert (view.state, view.cancel_requested) == ("running", True)
    assert asked.wake == (WorkerChanged("w1"),)
    orders = dispatch.take_new_cancels(db, "w1")
    assert [(o.id, o.attempt, o.requested) for o in orders] == [(running, 1, True)]
    assert dispatch.take_new_cancels(db, "w1") == []  # the long-poll is told once...
    (beat,) = beat_orders(db, instance, [running])  # ...heartbeats repeat it
    assert beat.id == running
    dispatch.report_result(db, running, "w1", result(instance, 1, "failed", -15))
    view = jobs.get_job(db, running)
    assert view.state == "cancelled" and "cancelled while running on w1" in view.reason
    assert [e.actor for e in view.history if e.event == "cancel_requested"] == ["op"]

    dispatch.claim(db, "w1", instance, 1, seq=2)
    dispatch.report_result(db, done, "w1", result(instance, 1))
    with pytest.raises(Conflict, match="already ended as success"):
        jobs.cancel(db, done, "op")


def test_a_cancelled_job_never_starts(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    jobs.cancel(db, job, "op")
    assert dispatch.claim(db, "w1", instance, 4, seq=1)[0] == []
    assert not dispatch.has_queued(db, ["default"], 4)


def test_a_job_cancelled_while_claimed_and_then_handed_back_never_starts(session_factory):
    db = session_factory
    instance = register(db)
    elsewhere = register(db, "w2")
    job = submit(db, retries=3)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    jobs.cancel(db, job, "op")
    released = dispatch.release(db, job, "w1", JobRelease(instance_id=instance, attempt=1, seq=1))
    assert released.wake == ()  # nobody is woken for it
    view = jobs.get_job(db, job)
    assert (view.state, view.worker, view.attempt) == ("cancelled", None, 0)
    assert "handed back unstarted by w1" in view.reason
    assert [e.event for e in view.history][-2:] == ["cancel_requested", "cancelled"]
    assert not dispatch.has_queued(db, ["default"], 4)
    assert dispatch.claim(db, "w2", elsewhere, 4, seq=1)[0] == []


def beat_orders(db, instance: str, running: list[int]) -> list[JobCancel]:
    """The cancel orders a heartbeat of w1 reporting ``running`` is answered with."""
    beat = Heartbeat(
        instance_id=instance,
        state="running",
        running_jobs=running,
        applied_version=0,
        applied_concurrency=1,
    )
    (answer,) = heartbeats.write(db, [heartbeats.Beat("w1", beat)])
    return answer.cancel


def test_heartbeats_order_stale_runs_stopped(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db, retries=1)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    assert beat_orders(db, instance, [job]) == []
    with db.begin() as session:
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=60)
        session.get(Job, job).started_at = utcnow() - timedelta(seconds=60)
    sweep.requeue_lost(db, OFFLINE, utcnow())
    (order,) = beat_orders(db, instance, [job, 999])[:1]
    assert (order.id, order.attempt, order.requested) == (job, 1, False)
    missing = beat_orders(db, instance, [999])
    assert [(o.id, o.requested) for o in missing] == [(999, False)]


def test_the_log_cap_keeps_one_notice_and_refuses_the_rest(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=0, data="a" * 600), 1000)
    dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=0, data="a" * 600), 1000)  # retry
    for seq in (1, 2):
        with pytest.raises(PayloadTooLarge):
            dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=seq, data="b" * 600), 1000)
    text = jobs.job_log(db, job).log
    assert text.startswith("a" * 600)
    assert text.count("log truncated") == 1
    assert jobs.get_job(db, job).log_truncated
    dispatch.report_result(db, job, "w1", result(instance, 1))  # the job itself is unaffected
    assert jobs.get_job(db, job).state == "success"


def test_log_cursor_returns_only_newer_output(session_factory):
    db = session_factory
    instance = register(db)
    job = submit(db)
    dispatch.claim(db, "w1", instance, 1, seq=1)
    first = jobs.job_log(db, job)
    assert (first.log, first.cursor, first.finished) == ("", "", False)
    dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=0, data="one "))
    dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=1, data="two "))
    second = jobs.job_log(db, job, first.cursor)
    assert (second.log, second.cursor) == ("one two ", "1:1")
    dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=2, data="three"))
    dispatch.report_result(db, job, "w1", result(instance, 1))
    third = jobs.job_log(db, job, second.cursor)
    assert (third.log, third.finished) == ("three", True)
    assert jobs.job_log(db, job, third.cursor).log == ""
    assert jobs.job_log(db, job, attempt=2).log == ""


def test_slots_are_budgeted_and_oversized_jobs_wait_with_a_reason(session_factory):
    db = session_factory
    instance = register(db, concurrency=4)
    heavy = submit(db, slots=3)
    light = [submit(db) for _ in range(3)]
    huge = submit(db, slots=5)
    claimed, _ = dispatch.claim(db, "w1", instance, 4, seq=1)
    assert [a.id for a in claimed] == [heavy, light[0]]
    assert sum(a.slots for a in claimed) == 4
    views = {v.id: v for v in jobs.list_jobs(db, None, 100, 0, OFFLINE)}
    assert views[huge].waiting_reason == (
        "needs 5 slots, but the largest live worker serving queue 'default' offers 4"
    )
    assert views[light[1]].waiting_reason is None
    other = submit(db, queue="gpu")
    assert jobs.get_job(db, other, OFFLINE).waiting_reason == ("no live worker serves queue 'gpu'")


def test_finished_jobs_are_purged_with_their_logs_and_history(session_factory):
    db = session_factory
    instance = register(db)
    old, recent, waiting = submit(db), submit(db), submit(db, queue="other")
    dispatch.claim(db, "w1", instance, 2, seq=1)
    for job in (old, recent):
        dispatch.push_log(db, job, "w1", LogChunk(attempt=1, seq=0, data="x"))
        dispatch.report_result(db, job, "w1", result(instance, 1))
    with db.begin() as session:
        session.get(Job, old).finished_at = utcnow() - timedelta(hours=2)
    assert sweep.purge_finished(db, 3600, utcnow()) == 1
    assert sweep.purge_finished(db, 3600, utcnow()) == 0
    with db() as session:
        assert sorted(session.scalars(select(Job.id))) == [recent, waiting]
        assert session.scalar(select(func.count()).where(JobEvent.job_id == old)) == 0
        assert session.scalar(select(func.count()).where(JobLogChunk.job_id == old)) == 0
