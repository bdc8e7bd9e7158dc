"""When a silent worker is offline: a few of its own heartbeat intervals, with a floor, and
never later than the offline timeout. The sweep that re-queues its runs and the state
operators see judge by the same rule; every ``now`` here is explicit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from edgefleet.contract import JobSubmit, Registration, WorkerState
from edgefleet.db.models import Worker
from edgefleet.db.types import utcnow
from edgefleet.server.services import dispatch, jobs, liveness, sweep, workers

TIMEOUT = 150.0  # the default upper bound


@pytest.mark.parametrize(
    ("interval", "timeout", "allowed"),
    [(2, 150, 10), (1, 150, 10), (3, 150, 15), (30, 150, 150), (60, 150, 150), (1, 5, 5)],
)
def test_allowed_silence(interval, timeout, allowed):
    assert liveness.allowed_silence(interval, timeout) == allowed


def running_worker(db, interval: float, hostname: str = "w1"):
    """A worker beating every ``interval`` seconds with one running job (retries left), and
    the time of its last heartbeat (after the claim)."""
    instance = uuid.uuid4().hex
    reg = Registration(
        instance_id=instance, concurrency=1, queues=["default"], heartbeat_interval=interval
    )
    workers.register(db, hostname, reg, TIMEOUT)
    job = jobs.submit(db, JobSubmit(command=["true"], retries=1), "tester")
    dispatch.claim(db, hostname, instance, 1, seq=1)
    last_beat = utcnow()
    with db.begin() as session:
        session.get(Worker, hostname).last_heartbeat = last_beat
    return job, last_beat


def shown_state(db, now, timeout: float = TIMEOUT, hostname: str = "w1") -> WorkerState:
    with db() as session:
        return workers.observed_state(session.get(Worker, hostname), now, timeout)


def lost_after(db, last_beat, seconds: float, timeout: float = TIMEOUT, **kwargs) -> list[int]:
    now = last_beat + timedelta(seconds=seconds)
    return [run.job_id for run in sweep.requeue_lost(db, timeout, now, **kwargs)]


def test_a_worker_beating_every_2s_is_lost_after_10s_of_silence(session_factory):
    db = session_factory
    job, last_beat = running_worker(db, interval=2)
    assert lost_after(db, last_beat, 9.5) == []
    assert shown_state(db, last_beat + timedelta(seconds=9.5)) == WorkerState.UNKNOWN
    assert shown_state(db, last_beat + timedelta(seconds=10.5)) == WorkerState.OFFLINE
    assert lost_after(db, last_beat, 10.5) == [job]
    view = jobs.get_job(db, job)
    assert (view.state, view.history[-1].event) == ("queued", "lost")
    assert "worker w1 went offline (no heartbeat for 10s, beating every 2s)" in view.reason


def test_a_worker_beating_every_30s_keeps_the_whole_timeout(session_factory):
    db = session_factory
    job, last_beat = running_worker(db, interval=30)
    assert lost_after(db, last_beat, 100) == []
    assert shown_state(db, last_beat + timedelta(seconds=100)) == WorkerState.UNKNOWN
    assert lost_after(db, last_beat, 149) == []
    assert shown_state(db, last_beat + timedelta(seconds=151)) == WorkerState.OFFLINE
    assert lost_after(db, last_beat, 151) == [job]
    assert "no heartbeat for 151s, beating every 30s" in jobs.get_job(db, job).reason


@pytest.mark.parametrize(("interval", "timeout"), [(60, 150), (2, 5)])
def test_the_offline_timeout_is_the_upper_bound(session_factory, interval, timeout):
    db = session_factory
    job, last_beat = running_worker(db, interval=interval)
    assert lost_after(db, last_beat, timeout - 0.5, timeout) == []
    assert shown_state(db, last_beat + timedelta(seconds=timeout + 0.5), timeout) == "offline"
    assert lost_after(db, last_beat, timeout + 0.5, timeout) == [job]


def test_silence_counts_from_the_sweeps_start_at_the_earliest(session_factory):
    """After a server outage every worker looks silent: each gets its own allowed silence
    from the server's start to come back before its runs are lost."""
    db = session_factory
    job, last_beat = running_worker(db, interval=2)
    since = last_beat + timedelta(seconds=300)
    assert lost_after(db, last_beat, 309, watching_since=since) == []
    assert lost_after(db, last_beat, 311, watching_since=since) == [job]


def test_only_the_offline_worker_loses_its_runs(session_factory):
    db = session_factory
    fast, last_beat = running_worker(db, interval=2, hostname="fast")
    slow, _ = running_worker(db, interval=30, hostname="slow")
    assert lost_after(db, last_beat, 20) == [fast]
    assert jobs.get_job(db, slow).state == "running"
