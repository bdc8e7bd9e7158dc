"""``edgefleet submit``, ``cancel``, ``jobs list|show|cancel`` and ``logs``: jobs through the
server's API."""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Annotated, Any

import typer

from edgefleet import parsing
from edgefleet.cli.api import ApiError
from edgefleet.cli.common import OutputOption
from edgefleet.cli.context import admin_client, call, parsed, query
from edgefleet.cli.output import (
    OutputFormat,
    next_page_hint,
    print_json,
    print_listing,
    print_table,
    shell_words,
    with_ages,
)

app = typer.Typer(help="Inspect and cancel jobs.", no_args_is_help=True)

JOB_COLUMNS = [
    ("id", "ID"),
    ("state", "STATE"),
    ("queue", "QUEUE"),
    ("worker", "WORKER"),
    ("attempt", "ATTEMPT"),
    ("exit_code", "EXIT"),
    ("command", "COMMAND"),
    ("queued_at", "QUEUED"),
    ("started_at", "STARTED"),
    ("finished_at", "FINISHED"),
    ("why", "REASON"),
]
JOB_DETAIL_FIELDS = [
    "id",
    "state",
    "queue",
    "priority",
    "slots",
    "command",
    "env",
    "secret_env_keys",
    "cwd",
    "timeout",
    "attempt",
    "max_attempts",
    "retry_delay",
    "worker",
    "exit_code",
    "reason",
    "waiting_reason",
    "not_before",
    "cancel_requested",
    "log_truncated",
    "queued_at",
    "started_at",
    "finished_at",
]
#: Times the jobs table shows as ages ("3m ago"); JSON keeps them as ISO timestamps.
_TIMES = ("queued_at", "started_at", "finished_at")
HISTORY_COLUMNS = [
    ("at", "AT"),
    ("event", "EVENT"),
    ("state", "STATE"),
    ("attempt", "ATTEMPT"),
    ("worker", "WORKER"),
    ("exit_code", "EXIT"),
    ("actor", "BY"),
    ("reason", "REASON"),
]
#: Seconds between polls of ``logs --follow``.
FOLLOW_INTERVAL = 0.5


def parse_env(values: list[str], option: str = "--env") -> dict[str, str]:
    """Env values are kept as given (no trimming); a --secret-env value is never echoed."""
    secret = option == "--secret-env"
    return parsed(partial(parsing.parse_pairs, strip=False, secret=secret), values, option)


def submit(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    queue: Annotated[
        str, typer.Option("--queue", "-q", help="Queue to put the job on.")
    ] = "default",
    priority: Annotated[int, typer.Option(help="Higher runs first (then oldest first).")] = 0,
    slots: Annotated[
        int, typer.Option(min=1, help="Concurrency slots the job takes on its worker.")
    ] = 1,
    retries: Annotated[
        int, typer.Option(min=0, help="Further attempts after a failed or lost one.")
    ] = 0,
    retry_delay: Annotated[
        float,
        typer.Option(min=0, help="Seconds before the first retry; doubles for each next one."),
    ] = 10.0,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds an attempt may run before it is killed and fails."),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the job, repeatable.")
    ] = None,
    secret_env: Annotated[
        list[str] | None,
        typer.Option(
            "--secret-env",
            help="KEY=VALUE only the worker running the job receives; listings show the KEY "
            "alone. Repeatable.",
        ),
    ] = None,
    cwd: Annotated[
        str | None, typer.Option(help="Absolute directory on the worker to run the job in.")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Queue a job: `edgefleet submit [OPTIONS] -- CMD ARG...` (run without a shell)."""
    body: dict[str, Any] = {
        "command": command,
        "queue": queue,
        "priority": priority,
        "slots": slots,
        "retries": retries,
        "retry_delay": retry_delay,
        "env": parse_env(env or []),
    }
    if secret_env:
        body["secret_env"] = parse_env(secret_env, "--secret-env")
    if timeout is not None:
        body["timeout"] = timeout
    if cwd is not None:
        body["cwd"] = cwd
    created = call(ctx, "POST", "/jobs", json=body)
    if output is OutputFormat.JSON:
        print_json(created)
    else:
        print(created["id"])


def _why(job: dict[str, Any]) -> str | None:
    if job.get("cancel_requested") and job.get("state") == "running":
        return "cancel requested"
    return job.get("waiting_reason") or job.get("reason")


def for_table(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs as the table shows them: the command shell-quoted, times as ages, and why."""
    return [
        {**job, "command": shell_words(job.get("command")), "why": _why(job)}
        for job in with_ages(jobs, _TIMES)
    ]


def job_states(incomplete: str) -> list[str]:
    """The states ``--state`` takes, for shell completion (the contract loads only then)."""
    from edgefleet.contract import JobState

    return [state.value for state in JobState if state.value.startswith(incomplete)]


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state.", autocompletion=job_states)
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 1000,
    before: Annotated[
        int | None,
        typer.Option(min=1, help="Only jobs older than this id (the next page's cursor)."),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """List jobs, newest first; REASON says why a job ended, or why a queued one waits.

    A full page ends with a note on stderr naming the --before ID of the next one."""
    params = query(limit=limit, state=state or None, queue=queue or None, before=before)
    jobs = call(ctx, "GET", "/jobs", params=params)
    print_listing(jobs, output, JOB_COLUMNS, for_table)
    given = {"--state": state, "--queue": queue, "--limit": limit}
    next_page_hint(jobs, limit, ["edgefleet", "jobs", "list"], given)


@app.command("show")
def show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show one job and its history: every state change with its time, worker and attempt."""
    job = call(ctx, "GET", f"/jobs/{job_id}")
    if output is OutputFormat.JSON:
        print_json(job)
        return
    for key in JOB_DETAIL_FIELDS:
        value = job.get(key)
        if key == "command":
            value = shell_words(value)
        elif isinstance(value, list):
            value = " ".join(str(v) for v in value) or None
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items()) or None
        print(f"{key:17} {value if value is not None else '-'}")
    print("\nhistory:")
    print_table(job.get("history", []), HISTORY_COLUMNS)


def cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[int], typer.Argument(help="Job ids.")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Cancel jobs: a queued one never starts; a running one is killed on its worker.

    Exits 1 if any job could not be cancelled (unknown, or already ended otherwise).
    """
    results, failed = [], False
    with admin_client(ctx) as client:
        for job_id in job_ids:
            try:
                results.append(client.post(f"/jobs/{job_id}/cancel"))
            except ApiError as exc:
                failed = True
                print(f"error: job {job_id}: {exc}", file=sys.stderr)
    if output is OutputFormat.JSON:
        print_json(results)
    else:
        for job in results:
            note = "cancel requested (stopping on its worker)" if job["state"] == "running" else ""
            print(f"{job['id']}: {note or job['state']}")
    if failed:
        raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the job ends.")
    ] = False,
    attempt: Annotated[int | None, typer.Option(min=1, help="Only this attempt's output.")] = None,
) -> None:
    """Print a job's captured stdout and stderr (all attempts, in order)."""
    params: dict[str, Any] = {} if attempt is None else {"attempt": attempt}
    with admin_client(ctx) as client:
        body = client.get(f"/jobs/{job_id}/logs", params=params)
        _write(body["log"])
        try:
            while follow and not body["finished"]:
                time.sleep(FOLLOW_INTERVAL)
                body = _next_logs(client, job_id, params, body)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _next_logs(client, job_id: int, params: dict[str, Any], last: dict[str, Any]):
    """Output after ``last``'s cursor; while the server is unreachable, keep waiting."""
    try:
        body = client.get(f"/jobs/{job_id}/logs", params={**params, "cursor": last["cursor"]})
    except ApiError as exc:
        if exc.status_code is not None:
            raise
        print(f"warning: {exc}; still following", file=sys.stderr)
        return last
    _write(body["log"])
    return body


def _write(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


app.command("cancel")(cancel)
