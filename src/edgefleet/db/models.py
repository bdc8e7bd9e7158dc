"""ORM models: the database is the single source of truth for desired and reported state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from edgefleet.db.types import UTCDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Worker(Base):
    """One edge worker: what the operator wants of it (desired) and what it last reported.

    Each operator-controlled setting has a nullable ``*_override`` column: ``None`` means the
    worker's own start-up flag (``flag_*``) is in force, a value means the operator's wins,
    also across worker restarts, until it is reset (the values in force: ``fleet_rules``).
    """

    __tablename__ = "edge_worker"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    reported_state: Mapped[str] = mapped_column(String(32), default="starting")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)

    flag_concurrency: Mapped[int]
    concurrency_override: Mapped[int | None]
    #: When ``concurrency_override`` ends by itself (the sweep clears both); None: at reset.
    concurrency_override_until: Mapped[datetime | None]
    flag_queues: Mapped[list[str]]
    queues_override: Mapped[list[str] | None]
    maintenance_requested: Mapped[bool] = mapped_column(default=False)
    maintenance_comment: Mapped[str | None] = mapped_column(Text)
    shutdown_requested: Mapped[bool] = mapped_column(default=False)
    #: The standing layer's value (a label rule, else the fleet default; ``None``: neither
    #: applies), kept on the row so a claim reads no rules: ``layer_source`` says which layer
    #: and ``layer_rule`` which label rule (``services/layers.py`` keeps them current).
    layer_concurrency: Mapped[int | None]
    layer_source: Mapped[str | None] = mapped_column(String(16))
    layer_rule: Mapped[str | None] = mapped_column(Text)
    #: Bumped on every change of desired state; workers acknowledge it as ``applied_version``.
    desired_version: Mapped[int] = mapped_column(default=1)

    applied_version: Mapped[int] = mapped_column(default=0)
    applied_concurrency: Mapped[int | None]
    applied_at: Mapped[datetime | None]

    instance_id: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int | None]
    heartbeat_interval: Mapped[float] = mapped_column(default=30.0)
    sysinfo: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_online: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    last_heartbeat: Mapped[datetime | None]
    #: The ``seq`` of this worker process's latest fetch: a repeated fetch gets its jobs again,
    #: an older one gets none (see ``FetchRequest``). Reset when a new process registers.
    fetch_seq: Mapped[int] = mapped_column(default=0)
    #: Set when an operator revoked the worker: its credentials are dead and its calls are
    #: refused until it enrolls again with a new join token.
    revoked_at: Mapped[datetime | None]


class Job(Base):
    """A command queued for any worker serving its queue.

    ``attempt`` counts the runs started; ``worker_hostname`` and ``attempt`` together name the
    run the server currently counts on, which is how stale reports are told apart.
    """

    __tablename__ = "edge_job"
    __table_args__ = (Index("ix_edge_job_worker_state", "worker_hostname", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    command: Mapped[list[str]]
    queue: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(default=0)
    slots: Mapped[int] = mapped_column(default=1)
    attempt: Mapped[int] = mapped_column(default=0)
    worker_hostname: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    retries: Mapped[int] = mapped_column(default=0)
    retry_delay: Mapped[float] = mapped_column(Double, default=10.0)
    timeout: Mapped[float | None] = mapped_column(Double)
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Environment values only the worker that runs the job may read: never listed or logged.
    secret_env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cwd: Mapped[str | None] = mapped_column(Text)
    #: A job queued for a retry is not claimed before this time.
    not_before: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    #: Whether the worker's long-poll has been answered with the cancel (heartbeats always
    #: repeat it until the job ends).
    cancel_notified: Mapped[bool] = mapped_column(default=False)
    #: The worker's fetch ``seq`` that claimed the current attempt.
    claim_seq: Mapped[int | None]
    log_bytes: Mapped[int] = mapped_column(default=0)
    log_truncated: Mapped[bool] = mapped_column(default=False)
    #: A name the submitter chose to find the job again (many jobs may share one), e.g. an
    #: Airflow task instance: looked up in batches by ``POST /jobs/status``.
    key: Mapped[str | None] = mapped_column(String(255), index=True)


# The claim query: queued jobs of a queue in claim order (highest priority first, then oldest).
# ``priority DESC`` matches that order, so a claim reads its first rows off the index and
# stops instead of sorting every queued job of the queue.
Index("ix_edge_job_claim_order", Job.state, Job.queue, Job.priority.desc(), Job.id)
# The throughput report: jobs finished in a window of minutes, per queue and state, read off
# the index alone.
Index("ix_edge_job_finished", Job.finished_at, Job.queue, Job.state)


class QueueCap(Base):
    """A queue's fleet-wide cap: at most ``concurrency`` of its jobs run at once, across
    every worker and replica. No row, or ``None``, means the queue is uncapped."""

    __tablename__ = "edge_queue_cap"

    queue: Mapped[str] = mapped_column(String(255), primary_key=True)
    concurrency: Mapped[int | None]
    #: Whether the cap holds jobs back: a claim or a waiting worker found it full, and no
    #: claim found room to spare since. Only then does a run that ends wake waiting workers.
    bound: Mapped[bool] = mapped_column(default=False)


class JobEvent(Base):
    """One step of a job's history: every change of state, with its time and attempt."""

    __tablename__ = "edge_job_event"
    __table_args__ = (Index("ix_edge_job_event_job", "job_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("edge_job.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(default=0)
    worker_hostname: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))


class JobLogChunk(Base):
    """A piece of a job's combined stdout/stderr; (job, attempt, seq) makes pushes idempotent."""

    __tablename__ = "edge_job_log"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("edge_job.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One control change: who changed which field of which worker, from what to what, why."""

    __tablename__ = "edge_audit"
    __table_args__ = (Index("ix_edge_audit_target_at", "target", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)


class ConcurrencyRule(Base):
    """A standing concurrency for every worker whose labels match ``selector`` (a label rule),
    or for the whole fleet when the selector is empty (the fleet default). ``selector_text``
    (``site=plant1,zone=a``, keys sorted; empty for the default) makes each selector unique.
    """

    __tablename__ = "edge_concurrency_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    selector_text: Mapped[str] = mapped_column(Text, unique=True)
    selector: Mapped[dict[str, Any]] = mapped_column(default=dict)
    concurrency: Mapped[int]
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    set_by: Mapped[str] = mapped_column(String(255))


class Schedule(Base):
    """A time window of concurrency: from each start of ``cron`` (in ``timezone``) for
    ``duration_seconds``, the workers matching ``selector`` (all of them when it is empty)
    run at ``concurrency``. ``window_start``/``window_end`` hold the window the server last
    put in force (None: closed), so replicas open and close each window once."""

    __tablename__ = "edge_schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    selector: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    duration_seconds: Mapped[int]
    concurrency: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]


class Credential(Base):
    """A bearer token the server issued: an operator's token (``kind`` operator, with its
    role) or a worker's own credential (``kind`` worker, ``name`` is its hostname).

    Only a SHA-256 of the token is stored; the token itself is shown once, when issued. A
    worker holds several rows for a moment while it rotates its credential.
    """

    __tablename__ = "edge_credential"
    __table_args__ = (Index("ix_edge_credential_name", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    #: A worker credential's labels, from the join token it was enrolled with: they are the
    #: operator's word and win over the labels the worker claims at registration.
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class JoinToken(Base):
    """A token that lets a new worker enroll: limited in time and in uses, and carrying the
    labels the enrolled worker gets. Stored as a SHA-256, like credentials."""

    __tablename__ = "edge_join_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]
    uses_left: Mapped[int]
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
