"""``edgefleet submit``, ``jobs list|show`` and ``logs``: jobs through the server's API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from edgefleet.cli.common import OutputOption, admin_client
from edgefleet.cli.output import OutputFormat, emit, print_json

app = typer.Typer(help="Inspect jobs.", no_args_is_help=True)

JOB_COLUMNS = [
    ("id", "ID"),
    ("state", "STATE"),
    ("queue", "QUEUE"),
    ("worker", "WORKER"),
    ("exit_code", "EXIT"),
    ("command", "COMMAND"),
    ("queued_at", "QUEUED"),
    ("started_at", "STARTED"),
    ("finished_at", "FINISHED"),
]
JOB_DETAIL_COLUMNS = [*JOB_COLUMNS, ("attempt", "ATTEMPT"), ("reason", "REASON")]


def submit(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    queue: Annotated[
        str, typer.Option("--queue", "-q", help="Queue to put the job on.")
    ] = "default",
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Queue a job: `edgefleet submit -- CMD ARG...` (run without a shell)."""
    with admin_client(ctx) as client:
        created = client.post(
            "/jobs", json={"command": command, "queue": queue, "priority": priority}
        )
    if output is OutputFormat.JSON:
        print_json(created)
    else:
        print(created["id"])


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 1000,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """List jobs, oldest first."""
    params = {"limit": limit, **({"state": state} if state else {})}
    with admin_client(ctx) as client:
        jobs = client.get("/jobs", params=params)
    emit(jobs, output, JOB_COLUMNS)


@app.command("show")
def show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show one job."""
    with admin_client(ctx) as client:
        job = client.get(f"/jobs/{job_id}")
    emit(job, output, JOB_DETAIL_COLUMNS)


def logs(ctx: typer.Context, job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Print a job's captured stdout and stderr."""
    with admin_client(ctx) as client:
        body = client.get(f"/jobs/{job_id}/logs")
    sys.stdout.write(body["log"])
