"""The wire contract between server, workers and admin clients (API version 1).

Every request body forbids unknown fields and uses strict integers, so a malformed or
mistyped request is refused with a 4xx instead of being half-understood.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edgefleet.settings import MAX_CONCURRENCY

API_VERSION = "v1"
API_PREFIX = f"/api/{API_VERSION}"

Concurrency = Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)]
QueueName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Hostname = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+$")
]
Argument = Annotated[str, StringConstraints(max_length=65536)]
Queues = Annotated[list[QueueName], Field(min_length=1, max_length=64)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerState(StrEnum):
    """What a worker is doing. The worker reports the first six; the server derives the rest.

    starting -> idle <-> running; a maintenance request moves it to maintenance_pending while
    jobs still run, then maintenance; a shutdown request to shutdown_pending, then stopped.
    No heartbeat for a while: unknown, and after the offline timeout: offline.
    """

    STARTING = "starting"
    IDLE = "idle"
    RUNNING = "running"
    MAINTENANCE_PENDING = "maintenance_pending"
    MAINTENANCE = "maintenance"
    SHUTDOWN_PENDING = "shutdown_pending"
    STOPPED = "stopped"
    UNKNOWN = "unknown"
    OFFLINE = "offline"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


FINISHED_JOB_STATES = frozenset({JobState.SUCCESS, JobState.FAILED})


# --- worker API -------------------------------------------------------------------------


class DesiredState(BaseModel):
    """What the centre wants a worker to be; sent back on every worker contact."""

    version: int
    concurrency: int
    concurrency_source: str  # "operator" (central override) or "flag" (worker's own)
    queues: list[str]
    maintenance: bool
    maintenance_comment: str | None
    shutdown: bool


class Registration(Request):
    instance_id: Annotated[str, StringConstraints(min_length=8, max_length=64)]
    #: The instance this process succeeds on the same host (a crash leaves it looking alive).
    replaces: str | None = None
    concurrency: Concurrency
    queues: Queues
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600)]
    pid: int | None = None
    sysinfo: dict[str, Any] = Field(default_factory=dict)


class Heartbeat(Request):
    instance_id: str
    state: WorkerState
    running_jobs: list[int] = Field(default_factory=list, max_length=MAX_CONCURRENCY)
    applied_version: Annotated[int, Field(strict=True, ge=0)]
    applied_concurrency: Concurrency


class WorkerContact(BaseModel):
    """The answer to registration, heartbeat and watch: the current desired state."""

    desired: DesiredState
    server_time: datetime


class LocalMaintenance(Request):
    """A maintenance switch flipped on the worker's own machine, forwarded to the centre."""

    instance_id: str
    maintenance: bool
    comments: Annotated[str, StringConstraints(max_length=1024)] | None = None


class FetchRequest(Request):
    instance_id: str
    free_slots: Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)]


class JobAssignment(BaseModel):
    id: int
    attempt: int
    command: list[str]
    queue: str
    slots: int


class FetchResponse(BaseModel):
    jobs: list[JobAssignment]
    desired: DesiredState


class JobResult(Request):
    instance_id: str
    attempt: Annotated[int, Field(strict=True, ge=1)]
    state: JobState
    exit_code: int | None = None
    reason: str | None = Field(default=None, max_length=4096)


class JobRelease(Request):
    """A claimed job the worker hands back unstarted (its limit dropped while fetching)."""

    instance_id: str
    attempt: Annotated[int, Field(strict=True, ge=1)]


class LogChunk(Request):
    attempt: Annotated[int, Field(strict=True, ge=1)]
    seq: Annotated[int, Field(strict=True, ge=0)]
    data: Annotated[str, StringConstraints(max_length=512 * 1024)]


# --- admin API --------------------------------------------------------------------------


class JobSubmit(Request):
    command: Annotated[list[Argument], Field(min_length=1, max_length=4096)]
    queue: QueueName = "default"
    priority: Annotated[int, Field(strict=True, ge=-1000, le=1000)] = 0


class JobCreated(BaseModel):
    id: int


class JobView(BaseModel):
    id: int
    command: list[str]
    queue: str
    state: JobState
    priority: int
    attempt: int
    worker: str | None
    exit_code: int | None
    reason: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobLogView(BaseModel):
    id: int
    log: str


class WorkerView(BaseModel):
    hostname: str
    state: WorkerState
    queues: list[str]
    labels: dict[str, str]
    concurrency: int
    concurrency_source: str
    flag_concurrency: int
    applied_concurrency: int | None
    desired_version: int
    applied_version: int
    applied_at: datetime | None
    converged: bool
    jobs_running: int
    maintenance_comment: str | None
    pid: int | None
    instance_id: str | None
    started_at: datetime | None
    last_heartbeat: datetime | None


class ConcurrencySet(Request):
    """The operator's concurrency for a worker; it wins over the worker's flag until reset."""

    concurrency: Concurrency


Comments = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Target(Request):
    """Which workers a control change is for: one name or glob, a label selector, or all.

    Exactly one of the three must be given. An exact name that is unknown, a glob or
    selector that matches no worker, and an empty selector are refused.
    """

    edge_hostname: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    selector: dict[str, str] | None = None
    all: bool = False


class SetConcurrency(Target):
    """Set ``concurrency``, or with ``reset`` hand it back to each worker's own flag."""

    concurrency: Concurrency | None = None
    reset: bool = False


class QueuesChange(Target):
    queues: Queues


class MaintenanceRequest(Target):
    comments: Comments


class WorkerChange(BaseModel):
    hostname: str
    field: str
    old: Any
    new: Any
    desired_version: int


class ChangeSet(BaseModel):
    """What one control request changed, worker by worker (unchanged workers are listed too)."""

    workers: list[str]
    changes: list[WorkerChange]
    #: The desired version each worker must acknowledge for the change to have landed.
    versions: dict[str, int]


class AuditView(BaseModel):
    id: int
    at: datetime
    actor: str
    target: str
    field: str
    old: Any
    new: Any
    comment: str | None


class ErrorBody(BaseModel):
    error: str
    detail: Any
