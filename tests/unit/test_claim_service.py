"""The claim service: the server's own cap on what a worker may hold at once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from edgefleet.contract import JobResult, JobSubmit, QueueCapRequest, Registration
from edgefleet.db.models import Worker
from edgefleet.errors import Conflict, NotFound
from edgefleet.server.services import caps, dispatch, jobs, workers

OFFLINE_TIMEOUT = 5.0


def _register(db, hostname: str, concurrency: int, queues=("default",)) -> str:
    instance_id = uuid.uuid4().hex
    registration = Registration(
        instance_id=instance_id,
        concurrency=concurrency,
        queues=list(queues),
        heartbeat_interval=1.0,
    )
    workers.register(db, hostname, registration, OFFLINE_TIMEOUT)
    return instance_id


def _submit(db, count: int, queue: str = "default") -> list[int]:
    return [jobs.submit(db, JobSubmit(command=["true"], queue=queue)) for _ in range(count)]


def _set_override(db, hostname: str, concurrency: int | None) -> None:
    """What the operator's change writes: the central concurrency override."""
    with db.begin() as session:
        session.get(Worker, hostname).concurrency_override = concurrency


def _finish(db, hostname: str, instance_id: str, job_id: int) -> None:
    result = JobResult(instance_id=instance_id, attempt=1, state="success", exit_code=0)
    dispatch.report_result(db, job_id, hostname, result)


def test_claim_never_exceeds_the_central_concurrency_even_when_asked_for_more(session_factory):
    db = session_factory
    instance_id = _register(db, "w1", concurrency=2)
    queued = _submit(db, 8)

    first, desired = dispatch.claim(db, "w1", instance_id, free_slots=8)
    assert desired.concurrency == 2
    assert [a.id for a in first] == queued[:2]
    assert all(a.attempt == 1 for a in first)

    second, _ = dispatch.claim(db, "w1", instance_id, free_slots=8)
    assert second == []

    # Raised centrally to 3: exactly one more, however many slots the worker claims to have.
    _set_override(db, "w1", 3)
    third, desired = dispatch.claim(db, "w1", instance_id, free_slots=8)
    assert (desired.concurrency, desired.concurrency_source) == (3, "operator")
    assert [a.id for a in third] == [queued[2]]
    assert dispatch.claim(db, "w1", instance_id, free_slots=8)[0] == []

    # Lowered to 1 while 3 run: nothing new until fewer than one job runs.
    _set_override(db, "w1", 1)
    for job_id in queued[:2]:
        _finish(db, "w1", instance_id, job_id)
        assert dispatch.claim(db, "w1", instance_id, free_slots=8)[0] == []
    _finish(db, "w1", instance_id, queued[2])
    fourth, _ = dispatch.claim(db, "w1", instance_id, free_slots=8)
    assert [a.id for a in fourth] == [queued[3]]


def test_claim_honours_the_workers_free_slots(session_factory):
    db = session_factory
    instance_id = _register(db, "w1", concurrency=5)
    _submit(db, 5)
    assert len(dispatch.claim(db, "w1", instance_id, free_slots=1)[0]) == 1
    assert len(dispatch.claim(db, "w1", instance_id, free_slots=2)[0]) == 2
    assert len(dispatch.claim(db, "w1", instance_id, free_slots=5)[0]) == 2


def test_claims_of_two_workers_are_counted_apart(session_factory):
    db = session_factory
    a = _register(db, "wa", concurrency=2)
    b = _register(db, "wb", concurrency=1)
    queued = _submit(db, 5)
    claimed_a = dispatch.claim(db, "wa", a, free_slots=5)[0]
    claimed_b = dispatch.claim(db, "wb", b, free_slots=5)[0]
    assert len(claimed_a) == 2 and len(claimed_b) == 1
    ids = [x.id for x in claimed_a + claimed_b]
    assert sorted(ids) == queued[:3]  # nothing handed out twice


def test_claim_takes_only_the_workers_queues(session_factory):
    db = session_factory
    instance_id = _register(db, "w1", concurrency=4, queues=("gpu",))
    _submit(db, 2, queue="default")
    (gpu_job,) = _submit(db, 1, queue="gpu")
    claimed, _ = dispatch.claim(db, "w1", instance_id, free_slots=4)
    assert [a.id for a in claimed] == [gpu_job]


def _candidate_reads(engine, claim) -> list[tuple[str, object]]:
    """The reads of queued jobs (statement, parameters) that ``claim()`` runs on ``engine``."""
    seen: list[tuple[str, object]] = []

    def note(_conn, _cursor, statement, parameters, *_args) -> None:
        if "ORDER BY edge_job.priority DESC" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        claim()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def _plan(engine, statement: str, parameters) -> str:
    """The database's plan for one statement, as text; on PostgreSQL with its index scans
    preferred (a table this small is otherwise read whole, which says nothing)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()


def test_a_claim_reads_its_queues_in_claim_order_without_sorting_them(session_factory):
    """The claim order index keeps ``priority DESC``: a claim reads the jobs it hands out and
    stops, however deep the queue (capped or not), instead of sorting all of them."""
    db = session_factory
    instance_id = _register(db, "w1", concurrency=4, queues=("default", "gpu"))
    _submit(db, 3)
    _submit(db, 3, queue="gpu")
    caps.set_cap(db, "gpu", QueueCapRequest(concurrency=100), "alice")

    reads = _candidate_reads(db.writer, lambda: dispatch.claim(db, "w1", instance_id, 4))
    assert len(reads) == 2  # the uncapped queue's read, and the capped one's
    for statement, parameters in reads:
        plan = _plan(db.writer, statement, parameters)
        assert "ix_edge_job_claim_order" in plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_claim_refuses_a_replaced_instance_and_an_unknown_worker(session_factory):
    db = session_factory
    _register(db, "w1", concurrency=2)
    _submit(db, 1)
    with pytest.raises(Conflict):
        dispatch.claim(db, "w1", "not-the-registered-instance", free_slots=1)
    with pytest.raises(NotFound):
        dispatch.claim(db, "nobody", "whatever", free_slots=1)
    assert jobs.list_jobs(db, None, 10, 0)[0].state == "queued"
