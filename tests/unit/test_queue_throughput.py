"""Throughput against a real database: finished jobs per minute and queue in one grouped
query over a bounded window (success and failed apart, cancelled and open jobs not at all),
and the API's bounds on the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update

from edgefleet.contract import JobState, JobSubmit
from edgefleet.db.models import Job
from edgefleet.server.services import jobs, throughput
from support import admin_token, auth_header

#: A moment in the middle of a minute: the window ends with the minute 12:30.
NOW = datetime(2026, 11, 30, 12, 30, 40, tzinfo=UTC)


def finished(db, queue: str, state: JobState, at: datetime) -> int:
    job_id = jobs.submit(db, JobSubmit(command=["true"], queue=queue), "tester")
    with db.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=state, finished_at=at))
    return job_id


def test_counts_finished_jobs_per_minute_and_queue_within_the_window(session_factory):
    db = session_factory
    start = datetime(2026, 11, 30, 11, 31, tzinfo=UTC)  # 60 minutes ending with 12:30
    finished(db, "build", JobState.SUCCESS, start)  # the first instant of the window
    finished(db, "build", JobState.SUCCESS, start + timedelta(seconds=59.9))
    finished(db, "build", JobState.FAILED, start + timedelta(seconds=30))
    finished(db, "build", JobState.SUCCESS, NOW)  # the current minute, last
    finished(db, "gpu", JobState.FAILED, start + timedelta(minutes=10, seconds=5))
    # Outside the window (just before it, or later than now's minute) or not throughput.
    finished(db, "build", JobState.SUCCESS, start - timedelta(microseconds=1))
    finished(db, "build", JobState.SUCCESS, NOW.replace(second=0) + timedelta(minutes=1))
    finished(db, "build", JobState.CANCELLED, start + timedelta(minutes=1))
    finished(db, "old", JobState.SUCCESS, start - timedelta(hours=3))
    jobs.submit(db, JobSubmit(command=["true"], queue="waiting"), "tester")

    view = throughput.throughput(db, 60, now=NOW)
    assert (view.start, view.minutes) == (start, 60)
    by_queue = {q.queue: q for q in view.queues}
    assert sorted(by_queue) == ["build", "gpu"]  # none finished in "old" or "waiting"
    build, gpu = by_queue["build"], by_queue["gpu"]
    assert len(build.success) == len(build.failed) == len(gpu.success) == 60
    assert build.success[0] == 2 and build.failed[0] == 1
    assert build.success[59] == 1 and sum(build.success) == 3 and sum(build.failed) == 1
    assert gpu.failed[10] == 1 and sum(gpu.failed) == 1 and sum(gpu.success) == 0

    # One minute: only the current one.
    (only,) = throughput.throughput(db, 1, now=NOW).queues
    assert (only.queue, only.success, only.failed) == ("build", [1], [0])


def test_no_finished_jobs_no_queues(session_factory):
    view = throughput.throughput(session_factory, 5, now=NOW)
    assert view.queues == [] and view.minutes == 5
    assert view.start == datetime(2026, 11, 30, 12, 26, tzinfo=UTC)


def test_the_query_reads_the_window_off_the_finished_index(session_factory):
    statement = throughput._query(NOW - timedelta(hours=1), NOW)
    with session_factory() as session:
        dialect = session.get_bind().dialect
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN QUERY PLAN" if dialect.name == "sqlite" else "EXPLAIN"
        plan = " ".join(str(row) for row in session.execute(text(f"{explain} {compiled}")))
    assert "ix_edge_job_finished" in plan, plan


def test_the_api_reports_the_last_hour_and_refuses_windows_out_of_bounds(app_client, app_settings):
    headers = auth_header(admin_token(app_settings.secret))
    body = app_client.get("/api/v1/queues/throughput", headers=headers).json()
    assert body["minutes"] == 60 and body["queues"] == []
    for minutes in ("0", "1441", "many"):
        url = f"/api/v1/queues/throughput?minutes={minutes}"
        assert app_client.get(url, headers=headers).status_code == 422, minutes
