"""The wire contract between server, workers and admin clients (API version 1).

Every request body forbids unknown fields and uses strict integers, so a malformed or
mistyped request is refused with a 4xx instead of being half-understood.

Annotations here are evaluated as the classes are defined (no ``from __future__ import
annotations``): pydantic would otherwise parse every field's annotation from its string,
a quarter of the CPU these models cost each server and worker at start.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from edgefleet import API_PREFIX, API_VERSION
from edgefleet.cron_windows import MAX_DURATION_SECONDS
from edgefleet.parsing import LABEL_KEY_PATTERN, MAX_LABEL_KEY, MAX_QUEUE_NAME, QUEUE_NAME_PATTERN
from edgefleet.settings import MAX_CONCURRENCY

__all__ = ["API_PREFIX", "API_VERSION"]  # re-exported: part of the contract

# --- bounds --------------------------------------------------------------------------
# Every value on the wire fits the column it ends up in, so a bad value is refused with a
# 422 that names it, never a database error (a 500 for every request sharing its write
# group). The integer columns are INTEGER: 4 bytes on PostgreSQL.

#: Largest value an integer column holds.
DB_INT_MAX = 2**31 - 1
#: A signed integer a column holds (exit codes may be negative: killed by a signal).
DbInt = Annotated[int, Field(strict=True, ge=-DB_INT_MAX - 1, le=DB_INT_MAX)]
#: A counter or version: 0 or more, within a column.
Count = Annotated[int, Field(strict=True, ge=0, le=DB_INT_MAX)]
#: A job id, or an attempt or sequence number that starts at 1.
Serial = Annotated[int, Field(strict=True, ge=1, le=DB_INT_MAX)]
JobId = Serial

#: Characters a text column refuses (PostgreSQL stores no NUL), nor may a label hold other
#: control characters. A pattern also refuses unpaired surrogates, which no UTF-8 can hold.
_NO_NUL = r"^[^\x00]*$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Concurrency = Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)]
QueueName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUEUE_NAME, pattern=QUEUE_NAME_PATTERN),
]
#: A worker's name: letters, digits, ``_ . -``, starting with a letter or digit; never a
#: glob, a path or anything a shell or a URL would read differently.
HOSTNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=HOSTNAME_PATTERN)]
#: A worker's name or a glob over names (``site-a-*``, ``w[12]``), bounded here; its syntax
#: is checked where it is matched (``fleet_rules.check_glob``: a 400 that says what is wrong).
HOST_PATTERN_SYNTAX = _PRINTABLE
HostPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=HOST_PATTERN_SYNTAX)
]
#: Names one worker process (a fresh one per start).
INSTANCE_ID_SYNTAX = r"^[A-Za-z0-9_.:\-]+$"
InstanceId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=INSTANCE_ID_SYNTAX)
]
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_LABEL_KEY, pattern=LABEL_KEY_PATTERN)
]
LabelValue = Annotated[str, StringConstraints(max_length=255, pattern=_PRINTABLE)]
MAX_LABELS = 64
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
#: What a worker tells of its host: a flat map of short scalars.
SysinfoValue = (
    Annotated[str, StringConstraints(max_length=1024, pattern=_NO_NUL)]
    | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)
Sysinfo = Annotated[dict[LabelKey, SysinfoValue], Field(max_length=64)]
#: Longest reason a worker gives for how a job ended; a longer one is cut (``clip_reason``).
MAX_REASON_LENGTH = 4096
#: Why a job ended or was stopped, as told by a worker.
Reason = Annotated[str, StringConstraints(max_length=MAX_REASON_LENGTH, pattern=_NO_NUL)]
Argument = Annotated[str, StringConstraints(max_length=65536, pattern=_NO_NUL)]
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: An absolute path, no NUL bytes.
WORK_DIR_PATTERN = r"^/[^\x00]*$"
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, StringConstraints(max_length=65536, pattern=_NO_NUL)]
#: An absolute directory on the worker (no NUL bytes); relative paths would depend on where
#: the worker happened to be started.
WorkDir = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=WORK_DIR_PATTERN)]
#: Characters one log chunk holds at most: even JSON-escaped, well below the body cap.
MAX_LOG_CHUNK_CHARS = 512 * 1024
#: Longest job timeout and retry delay accepted: 30 days.
MAX_JOB_SECONDS = 30 * 24 * 3600.0
MAX_RETRIES = 100
Queues = Annotated[list[QueueName], Field(min_length=1, max_length=64)]
#: A job's key: printable, chosen by whoever submits it.
JobKey = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_PRINTABLE)]


def clip_reason(reason: str | None) -> str | None:
    """A reason the contract accepts: one naming a 64 KiB argument is cut, not refused."""
    if reason is None or len(reason) <= MAX_REASON_LENGTH:
        return reason
    return reason[: MAX_REASON_LENGTH - 3] + "..."


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
    #: An operator revoked it: its credentials are dead until it enrolls again.
    REVOKED = "revoked"


class JobState(StrEnum):
    """queued -> running -> success | failed | cancelled; a failed attempt with retries left
    (or one lost with its worker) goes back to queued, due again after a backoff."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_JOB_STATES = frozenset({JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED})


# --- worker API -------------------------------------------------------------------------


class DesiredState(BaseModel):
    """What the centre wants a worker to be; sent back on every worker contact."""

    version: int
    concurrency: int
    #: "operator" (central override), "label-rule", "fleet-default" or "flag" (worker's own)
    concurrency_source: str
    #: When the operator's concurrency ends by itself (UTC); None: it holds until reset.
    concurrency_until: datetime | None = None
    #: What takes over when ``concurrency_until`` passes (the layer below the operator's
    #: value, and its source), so a worker out of touch at that moment hands back on time.
    concurrency_after: int | None = None
    concurrency_after_source: str | None = None
    queues: list[str]
    maintenance: bool
    maintenance_comment: str | None
    shutdown: bool


class Registration(Request):
    instance_id: Annotated[InstanceId, StringConstraints(min_length=8)]
    #: The instance this process succeeds on the same host (a crash leaves it looking alive).
    replaces: InstanceId | None = None
    concurrency: Concurrency
    queues: Queues
    labels: Labels = Field(default_factory=dict)
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600)]
    pid: Annotated[int, Field(strict=True, ge=0, le=DB_INT_MAX)] | None = None
    sysinfo: Sysinfo = Field(default_factory=dict)


class Heartbeat(Request):
    instance_id: InstanceId
    state: WorkerState
    running_jobs: list[JobId] = Field(default_factory=list, max_length=MAX_CONCURRENCY)
    applied_version: Count
    applied_concurrency: Concurrency


class JobCancel(BaseModel):
    """Stop your run of job ``id`` if its attempt is ``attempt`` or older.

    Sent for an operator's cancel, and for a run the server no longer counts as current (it
    was re-queued while the worker was out of touch): an older-or-equal bound, so an order
    that arrives late can never kill a newer attempt of the same job.
    """

    id: int
    attempt: int
    reason: str
    #: True for an operator's cancel (report it as cancelled); False for a stale run.
    requested: bool = True


class WakeReason(StrEnum):
    """Why a long-poll answered, so the worker only fetches when work may be waiting."""

    CHANGED = "changed"  # the desired state moved past the version the worker holds
    CANCEL = "cancel"  # a job run of this worker must stop
    WORK = "work"  # a queued job on one of its queues fits its free slots
    TIMEOUT = "timeout"  # nothing happened; ask again
    CLOSING = "closing"  # the server is shutting down
    REPLACED = "replaced"  # a newer long-poll of the same worker took over


class WorkerContact(BaseModel):
    """The answer to registration, heartbeat and watch: the current desired state, and the
    job runs this worker must stop."""

    desired: DesiredState
    server_time: datetime
    cancel: list[JobCancel] = Field(default_factory=list)
    #: Set on a long-poll's answer only.
    reason: WakeReason | None = None


class WatchQuery(BaseModel):
    """A long-poll's query string (``GET /edge/workers/{hostname}/watch``), built by the worker
    and read by the server from this one model. Query values arrive as text, so the numbers
    are lax (``"7"`` is 7) but bounded like the bodies' fields; unknown parameters are
    ignored, as for every query. ``applied_*`` and ``state`` acknowledge what the worker
    applied: all three, or none."""

    model_config = ConfigDict(extra="ignore")

    instance_id: InstanceId
    version: Annotated[int, Field(ge=0, le=DB_INT_MAX)]
    free_slots: Annotated[int, Field(ge=0, le=MAX_CONCURRENCY)] = 0
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    applied_version: Annotated[int | None, Field(ge=0, le=DB_INT_MAX)] = None
    applied_concurrency: Annotated[int | None, Field(ge=1, le=MAX_CONCURRENCY)] = None
    state: WorkerState | None = None


class LocalMaintenance(Request):
    """A maintenance switch flipped on the worker's own machine, forwarded to the centre."""

    instance_id: InstanceId
    maintenance: bool
    comments: Annotated[str, StringConstraints(max_length=1024, pattern=_NO_NUL)] | None = None


class FetchRequest(Request):
    """Claim jobs for up to ``free_slots`` slots.

    ``seq`` numbers the fetches of one worker process (1, 2, ...). A fetch whose answer was
    lost is sent again with the same ``seq`` and gets the same jobs back instead of new ones,
    and a stale copy of an older fetch claims nothing, so no job is ever claimed for a worker
    that never learns of it.
    """

    instance_id: InstanceId
    free_slots: Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)]
    seq: Serial | None = None


class JobAssignment(BaseModel):
    id: int
    attempt: int
    command: list[str]
    queue: str
    slots: int
    #: The job's env with its secret values: never part of a repr, so never of a log line.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = None
    #: Seconds the job may run before the worker kills its process group.
    timeout: float | None = None


class FetchResponse(BaseModel):
    jobs: list[JobAssignment]
    desired: DesiredState


class JobResult(Request):
    """How one attempt ended. Idempotent per (job, attempt): a retried report changes nothing.

    The attempt number is the fence: a worker process that replays its spool after a restart
    may report attempts it started, while a result for an attempt the server has since
    re-queued is refused (409).
    """

    instance_id: InstanceId
    attempt: Serial
    state: JobState
    exit_code: DbInt | None = None
    reason: Reason | None = None


#: Results one request reports at most.
MAX_BATCH_RESULTS = 1000


class ReportedResult(JobResult):
    """One result of a batch: a ``JobResult`` that names its job."""

    job_id: JobId


class ResultBatch(Request):
    """Results of one worker in one request. Each is judged on its own, exactly as if it
    had been reported alone, and answered in ``ResultOutcomes``."""

    results: Annotated[list[ReportedResult], Field(min_length=1, max_length=MAX_BATCH_RESULTS)]


class ResultOutcome(BaseModel):
    job_id: int
    attempt: int
    #: What reporting this result alone would have answered: 204 recorded (or recorded
    #: before), 400 not a finished state, 404 no such job, 409 the attempt is no longer
    #: current.
    status_code: int
    error: str | None = None
    detail: str | None = None


class ResultOutcomes(BaseModel):
    outcomes: list[ResultOutcome]


class JobRelease(Request):
    """A claimed job the worker hands back unstarted (its limit dropped while fetching)."""

    instance_id: InstanceId
    attempt: Serial
    #: The ``seq`` of the fetch that claimed it, so a late copy cannot release a later claim.
    seq: Serial | None = None


class LogChunk(Request):
    attempt: Serial
    seq: Count
    data: Annotated[str, StringConstraints(max_length=MAX_LOG_CHUNK_CHARS, pattern=_NO_NUL)]


# --- admin API --------------------------------------------------------------------------


class JobSubmit(Request):
    command: Annotated[list[Argument], Field(min_length=1, max_length=4096)]
    queue: QueueName = "default"
    priority: Annotated[int, Field(strict=True, ge=-1000, le=1000)] = 0
    #: Concurrency slots the job takes on its worker while it runs.
    slots: Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)] = 1
    #: Further attempts after a failed or lost one.
    retries: Annotated[int, Field(strict=True, ge=0, le=MAX_RETRIES)] = 0
    #: First retry delay in seconds; it doubles with each further retry (capped at 1 hour).
    retry_delay: Annotated[float, Field(ge=0, le=MAX_JOB_SECONDS)] = 10.0
    #: Seconds an attempt may run before its process group is killed and it fails.
    timeout: Annotated[float, Field(gt=0, le=MAX_JOB_SECONDS)] | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=256)
    #: Env values only the worker that runs the job receives: views show their names only
    #: (``secret_env_keys``). A name may not be in both maps.
    secret_env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=256, repr=False)
    cwd: WorkDir | None = None
    #: The submitter's own name for the job, to find it again (``POST /jobs/status``).
    key: JobKey | None = None

    @model_validator(mode="after")
    def _names_once(self) -> "JobSubmit":
        both = sorted(self.env.keys() & self.secret_env.keys())
        if both:
            raise ValueError(f"env and secret_env both name {', '.join(both)}; keep one")
        return self


#: Most jobs one batch submit takes.
MAX_BATCH_JOBS = 1000


#: Most ids plus keys one status lookup takes.
MAX_STATUS_LOOKUP = 10000


class JobStatusQuery(Request):
    """Jobs to report on, by id and/or by key: one request for all of a client's jobs."""

    ids: Annotated[list[JobId], Field(max_length=MAX_STATUS_LOOKUP)] = Field(default_factory=list)
    keys: Annotated[list[JobKey], Field(max_length=MAX_STATUS_LOOKUP)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounded(self) -> "JobStatusQuery":
        if len(self.ids) + len(self.keys) > MAX_STATUS_LOOKUP:
            raise ValueError(f"at most {MAX_STATUS_LOOKUP} ids and keys in all")
        return self


class JobStatus(BaseModel):
    """Where a job stands, without its command and env: what a poller needs."""

    id: int
    key: str | None
    queue: str
    state: JobState
    attempt: int
    worker: str | None
    exit_code: int | None
    reason: str | None
    cancel_requested: bool


class JobBatch(Request):
    """Many jobs in one request and one transaction: all are queued, or none."""

    jobs: Annotated[list[JobSubmit], Field(min_length=1, max_length=MAX_BATCH_JOBS)]


class JobsCreated(BaseModel):
    ids: list[int]


class JobCreated(BaseModel):
    id: int


class JobEventView(BaseModel):
    """One entry of a job's history: what happened, and the job's state after it."""

    at: datetime
    event: str
    state: JobState
    attempt: int
    worker: str | None
    exit_code: int | None
    reason: str | None
    actor: str | None


class JobView(BaseModel):
    id: int
    command: list[str]
    queue: str
    state: JobState
    priority: int
    slots: int
    attempt: int
    #: Attempts allowed in all: 1 + retries.
    max_attempts: int
    retry_delay: float
    timeout: float | None
    env: dict[str, str]
    #: Names of the job's secret env variables; their values are never shown.
    secret_env_keys: list[str] = Field(default_factory=list)
    cwd: str | None
    worker: str | None
    exit_code: int | None
    #: Why the job (or its last attempt) ended, or is being retried.
    reason: str | None
    #: Why a queued job is not running yet, when it is more than waiting its turn.
    waiting_reason: str | None = None
    #: When a job queued for a retry becomes due.
    not_before: datetime | None
    cancel_requested: bool
    log_truncated: bool
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    key: str | None = None


class JobDetail(JobView):
    history: list[JobEventView]


class JobLogView(BaseModel):
    """A job's output; with a ``cursor``, only what came after it (for ``logs --follow``)."""

    id: int
    log: str
    #: Pass back as ``cursor`` to get only newer output.
    cursor: str
    state: JobState
    finished: bool


class WorkerView(BaseModel):
    hostname: str
    state: WorkerState
    queues: list[str]
    labels: dict[str, str]
    concurrency: int
    concurrency_source: str
    #: The label rule that sets ``concurrency`` (``site=plant1``) when its source is one.
    concurrency_rule: str | None = None
    #: When the operator's concurrency ends by itself (UTC); None: it holds until reset.
    concurrency_until: datetime | None = None
    #: The schedule whose open window sets ``concurrency`` when its source is ``schedule``.
    concurrency_schedule: str | None = None
    flag_concurrency: int
    applied_concurrency: int | None
    desired_version: int
    applied_version: int
    applied_at: datetime | None
    converged: bool
    jobs_running: int
    #: Concurrency slots its running jobs take (a job may take more than one).
    slots_used: int = 0
    maintenance_comment: str | None
    pid: int | None
    instance_id: str | None
    started_at: datetime | None
    last_heartbeat: datetime | None


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range in UTC") from None


#: A point in time with its offset (a naive one is refused: whose clock would it be?),
#: held in UTC.
Until = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class ConcurrencySet(Request):
    """The operator's concurrency for a worker; it wins over the worker's flag until reset,
    or until ``until`` when given."""

    concurrency: Concurrency
    force: bool = False
    until: Until | None = None


Comments = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_NO_NUL)]


class Target(Request):
    """Which workers a control change is for: one name or glob, a label selector, or all.

    Exactly one of the three must be given. An exact name that is unknown, a glob or
    selector that matches no worker, and an empty selector are refused.
    """

    edge_hostname: HostPattern | None = None
    selector: Labels | None = None
    all: bool = False


class ConcurrencyFields(Request):
    """Set ``concurrency`` (until ``until``, when given), or with ``reset`` hand it back to
    each worker's own flag. ``force`` sets it even beyond ``EDGEFLEET_MAX_CONCURRENCY_PER_CPU``."""

    concurrency: Concurrency | None = None
    reset: bool = False
    force: bool = False
    until: Until | None = None


class QueuesFields(Request):
    queues: Queues


class CommentsFields(Request):
    comments: Comments


# The bodies of the one-action routes (``POST /workers/actions/<action>``): a target and the
# action's own fields side by side.


class SetConcurrency(Target, ConcurrencyFields):
    """Set ``concurrency``, or with ``reset`` hand it back to each worker's own flag."""


class QueuesChange(Target, QueuesFields):
    pass


class MaintenanceRequest(Target, CommentsFields):
    pass


# The changes ``PATCH /workers`` takes, one kind each, told apart by ``action``.


class SetConcurrencyChange(ConcurrencyFields):
    action: Literal["set-concurrency"]


class AddQueuesChange(QueuesFields):
    action: Literal["add-queues"]


class RemoveQueuesChange(QueuesFields):
    action: Literal["remove-queues"]


class CommentedChange(CommentsFields):
    """Draining a worker, or changing why it is drained; the comment is audited."""

    action: Literal["request-maintenance", "update-maintenance-comment"]


class PlainChange(Request):
    """A change that takes no value: hand queues back to the flag, leave maintenance, stop."""

    action: Literal["reset-queues", "exit-maintenance", "shutdown"]


Change = Annotated[
    SetConcurrencyChange | AddQueuesChange | RemoveQueuesChange | CommentedChange | PlainChange,
    Field(discriminator="action"),
]


class ControlRequest(Request):
    """One change to the desired state of the targeted workers (``PATCH /workers``).

    Every one-action route (``POST /workers/actions/<action>``, ``PUT|DELETE
    /workers/{host}/concurrency``) is this request written another way.
    """

    target: Target
    change: Change

    @classmethod
    def from_action(cls, action: str, body: Target) -> "ControlRequest":
        """The request a one-action route's body stands for: its target fields, and the rest
        as the change named ``action``."""
        target_fields = set(Target.model_fields)
        return cls.model_validate(
            {
                "target": body.model_dump(include=target_fields, exclude_unset=True),
                "change": {
                    "action": action,
                    **body.model_dump(exclude=target_fields, exclude_unset=True),
                },
            }
        )


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
    #: The server's own, never sent: each changed worker's settings as the change left them,
    #: from which its new desired state goes with its wake-up once the answer is sent.
    _changed: dict[str, Any] = PrivateAttr(default_factory=dict)


class ConcurrencyRuleSet(Request):
    """A standing concurrency for the workers with every label of ``selector``, or with
    ``default`` for every worker (the fleet default); give exactly one of the two. ``force``
    sets it even beyond ``EDGEFLEET_MAX_CONCURRENCY_PER_CPU`` for a worker it matches."""

    selector: Labels | None = None
    default: bool = False
    concurrency: Concurrency
    force: bool = False


class ConcurrencyRuleView(BaseModel):
    #: The rule's name: its selector (``site=plant1``), or ``default`` for the fleet default.
    rule: str
    selector: dict[str, str]
    source: str  # "label-rule" or "fleet-default"
    concurrency: int
    set_at: datetime
    set_by: str


class ConcurrencyRuleChange(BaseModel):
    """A rule set or removed, and what it changed: the workers whose concurrency in force
    moved (each with the desired version that acknowledges it)."""

    rule: ConcurrencyRuleView
    removed: bool = False
    changes: ChangeSet


#: A schedule's name: letters, digits, ``_ . -``, starting with a letter or digit.
SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"

#: What each name syntax above allows, in words: a refusal names this, not the expression.
PATTERN_WORDS = {
    HOSTNAME_PATTERN: "use letters, digits, '_', '.' or '-', starting with a letter or digit",
    LABEL_KEY_PATTERN: "use letters, digits, '_', '.', '-' or '/'",
    QUEUE_NAME_PATTERN: "use letters, digits, '_', '.', ':' or '-'",
    INSTANCE_ID_SYNTAX: "use letters, digits, '_', '.', ':' or '-'",
    _PRINTABLE: "control characters are not allowed",
    _NO_NUL: "NUL characters are not allowed",
    ENV_NAME_PATTERN: "use letters, digits and '_', not starting with a digit",
    WORK_DIR_PATTERN: "use an absolute path (starting with '/')",
}
ScheduleName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=SCHEDULE_NAME_PATTERN)
]


class ScheduleCreate(Request):
    """A schedule: from each start of ``cron`` in ``timezone`` (an IANA name) for
    ``duration_seconds``, the workers with every label of ``selector`` (with ``all``: every
    worker; give exactly one of the two) run at ``concurrency``. Without a ``name`` the
    server makes one up. ``force`` as for a rule (``EDGEFLEET_MAX_CONCURRENCY_PER_CPU``)."""

    name: ScheduleName | None = None
    selector: Labels | None = None
    all: bool = False
    cron: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_PRINTABLE)]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    duration_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_DURATION_SECONDS)]
    concurrency: Concurrency
    force: bool = False


class ScheduleView(BaseModel):
    """A schedule and its window as of now: open (``active``, from ``window_start`` until
    ``window_end``) or not, and when it next starts, in UTC and in its own time zone."""

    name: str
    selector: dict[str, str]
    #: Every worker (an empty selector).
    all: bool
    cron: str
    timezone: str
    duration_seconds: int
    concurrency: int
    created_at: datetime
    created_by: str
    active: bool
    window_start: datetime | None
    window_end: datetime | None
    next_start: datetime | None
    #: ``next_start`` with the offset of the schedule's time zone.
    next_start_local: datetime | None


class ScheduleChange(BaseModel):
    """A schedule added or removed, and the workers whose concurrency in force it moved."""

    schedule: ScheduleView
    removed: bool = False
    changes: ChangeSet


class LayerView(BaseModel):
    """One layer of a worker's concurrency, highest first: its value (None: it sets none)."""

    layer: str  # "operator", "schedule", "label-rule", "fleet-default" or "flag"
    concurrency: int | None
    rule: str | None = None
    in_force: bool
    note: str


class ConcurrencyExplained(BaseModel):
    """Where a worker's concurrency comes from: every layer, the one in force and why."""

    hostname: str
    concurrency: int
    concurrency_source: str
    concurrency_rule: str | None
    concurrency_schedule: str | None = None
    #: When the operator's value in force ends by itself (None: it holds until reset).
    concurrency_until: datetime | None = None
    why: str
    layers: list[LayerView]
    applied_concurrency: int | None
    desired_version: int
    applied_version: int
    converged: bool


class QueueView(BaseModel):
    """One queue's depth: jobs waiting and running in it now, and how long the oldest
    waiting one has waited (None when none waits); ``cap``: its fleet-wide limit on
    running jobs (None: uncapped)."""

    queue: str
    queued: int
    running: int
    oldest_queued_age_seconds: float | None
    oldest_queued_at: datetime | None = None
    cap: int | None = None


#: The longest window of a throughput report, in minutes (a day).
MAX_THROUGHPUT_MINUTES = 1440


class QueueThroughput(BaseModel):
    """One queue's finished jobs per minute, oldest minute first (``ThroughputView.start``)."""

    queue: str
    success: list[int]
    failed: list[int]


class ThroughputView(BaseModel):
    """Jobs finished per minute and queue over the last ``minutes`` minutes, the current
    (partial) minute last; only queues that finished a job in the window are listed."""

    #: The start of the first minute (UTC).
    start: datetime
    minutes: int
    queues: list[QueueThroughput]


#: A queue's fleet-wide cap on running jobs: 1 or more, within a column.
QueueCapValue = Annotated[int, Field(strict=True, ge=1, le=DB_INT_MAX)]


class QueueCapRequest(Request):
    """Set a queue's fleet-wide ``concurrency``, or with ``reset`` lift its cap."""

    concurrency: QueueCapValue | None = None
    reset: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> "QueueCapRequest":
        if self.reset == (self.concurrency is not None):
            raise ValueError("give exactly one of 'concurrency' (1 or more) or 'reset': true")
        return self


class QueueCapChange(BaseModel):
    """What a cap request did: the cap before and after (None: uncapped); ``changed`` is
    False when it already was the value asked for (nothing written, nothing audited)."""

    queue: str
    old: int | None
    new: int | None
    changed: bool


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


# --- credentials ------------------------------------------------------------------------

#: Longest lifetime of an operator token (ten years) and of a join token (thirty days).
MAX_TOKEN_TTL = 10 * 365 * 24 * 3600
MAX_JOIN_TTL = 30 * 24 * 3600
TokenName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:\-]+$")
]


class Role(StrEnum):
    """viewer: read only; operator: every control knob, submit, cancel; admin: also tokens,
    revocation and removal. (Workers hold credentials of their own, not roles.)"""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class TokenRequest(Request):
    name: TokenName
    role: Role
    ttl_seconds: Annotated[int, Field(strict=True, ge=60, le=MAX_TOKEN_TTL)] = 90 * 24 * 3600


class TokenIssued(BaseModel):
    """An operator token: ``token`` is shown this once and never again."""

    token: str
    name: str
    role: Role
    expires_at: datetime


class TokenView(BaseModel):
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None


class JoinTokenRequest(Request):
    ttl_seconds: Annotated[int, Field(strict=True, ge=60, le=MAX_JOIN_TTL)] = 3600
    uses: Annotated[int, Field(strict=True, ge=1, le=100000)] = 1
    labels: Labels = Field(default_factory=dict)


class JoinTokenIssued(BaseModel):
    token: str
    expires_at: datetime
    uses: int
    labels: dict[str, str]


class EnrollRequest(Request):
    """Sent with the join token as bearer token."""

    hostname: Hostname


class CredentialIssued(BaseModel):
    """A worker's own credential, bound to ``hostname``; shown once."""

    hostname: str
    credential: str
    expires_at: datetime


class WhoAmI(BaseModel):
    name: str
    role: str
    #: "secret" (minted from the shared secret), "token" or "credential".
    source: str
