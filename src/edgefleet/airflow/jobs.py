"""How an Airflow task workload becomes an edgefleet job, and how the job's state reads back.

Plain data in and out, no Airflow import: the executor hands in what it read off the workload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgefleet.parsing import MAX_QUEUE_NAME, QUEUE_NAME_PATTERN
from edgefleet.settings import MAX_CONCURRENCY

#: The job env variable that carries the workload JSON. It goes in ``secret_env``: the
#: workload holds the task's token for Airflow's execution API, which listings must not show.
WORKLOAD_ENV = "AIRFLOW_EDGEFLEET_WORKLOAD"

#: Runs the Task SDK's own entry point for a workload (the one Airflow's remote executors
#: use), reading the JSON from the environment rather than the command line.
BOOTSTRAP = (
    "import os, sys; "
    f"sys.argv = ['execute_workload', '--json-string', os.environ.pop('{WORKLOAD_ENV}')]; "
    "from airflow.sdk.execution_time.execute_workload import main; main()"
)

#: Seconds past a task's ``execution_timeout`` before edgefleet kills it: the Task SDK
#: enforces the timeout itself and reports it to Airflow; edgefleet's is the backstop.
TIMEOUT_GRACE = 60.0

#: Priorities a job takes (Airflow's priority weights are clipped into this range).
PRIORITY_RANGE = (-1000, 1000)


class UnsubmittableTask(ValueError):
    """A task edgefleet cannot queue as it is (e.g. a queue name it does not accept)."""


@dataclass(frozen=True)
class TaskFacts:
    """What the executor reads off one ExecuteTask workload."""

    ti_id: str
    try_number: int
    queue: str
    pool_slots: int
    priority_weight: int
    execution_timeout: float | None
    workload_json: str


def job_key(ti_id: str, try_number: int) -> str:
    """The key an edgefleet job carries for one try of one task instance, so the executor
    finds the job again after a scheduler restart."""
    return f"airflow:{ti_id}:{try_number}"


def job_request(task: TaskFacts, python: str) -> dict[str, Any]:
    """The ``POST /jobs`` body for a task. Retries stay Airflow's: the job has none."""
    if len(task.queue) > MAX_QUEUE_NAME or not re.match(QUEUE_NAME_PATTERN, task.queue):
        raise UnsubmittableTask(
            f"queue {task.queue!r} is not an edgefleet queue name "
            "(letters, digits and _ . : - only)"
        )
    low, high = PRIORITY_RANGE
    timeout = None
    if task.execution_timeout is not None and task.execution_timeout > 0:
        timeout = task.execution_timeout + TIMEOUT_GRACE
    return {
        "command": [python, "-c", BOOTSTRAP],
        "queue": task.queue,
        "priority": max(low, min(high, task.priority_weight)),
        "slots": max(1, min(MAX_CONCURRENCY, task.pool_slots)),
        "retries": 0,
        "timeout": timeout,
        "secret_env": {WORKLOAD_ENV: task.workload_json},
        "key": job_key(task.ti_id, task.try_number),
    }


@dataclass(frozen=True)
class Outcome:
    """What a job's state means for its task: ``None`` while it has not ended."""

    succeeded: bool
    reason: str


def outcome(status: dict[str, Any]) -> Outcome | None:
    """A ``POST /jobs/status`` entry read as Airflow sees it: success, or a failure with
    edgefleet's reason (failed, lost with its worker, cancelled on the edgefleet side)."""
    state = status["state"]
    if state == "success":
        return Outcome(True, "")
    if state in ("failed", "cancelled"):
        why = status.get("reason") or f"exit code {status.get('exit_code')}"
        where = f" on {status['worker']}" if status.get("worker") else ""
        return Outcome(False, f"edgefleet job {status['id']} {state}{where}: {why}")
    return None
