"""Fleet admin commands, named as operators know them from the Airflow edge CLI."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefleet.cli.common import HostnameOption, OutputOption, admin_client, fail
from edgefleet.cli.output import OutputFormat, emit, print_json
from edgefleet.settings import MAX_CONCURRENCY

WORKER_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("state", "STATE"),
    ("queues", "QUEUES"),
    ("concurrency", "CONCURRENCY"),
    ("concurrency_source", "SOURCE"),
    ("applied_concurrency", "APPLIED"),
    ("desired_version", "DESIRED_V"),
    ("applied_version", "APPLIED_V"),
    ("applied_at", "ACKED_AT"),
    ("jobs_running", "RUNNING"),
    ("last_heartbeat", "LAST_HEARTBEAT"),
]


def list_workers(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """One row per worker: desired next to applied values, and when it last checked in."""
    with admin_client(ctx) as client:
        workers = client.get("/workers")
    emit(workers, output, WORKER_COLUMNS)


def set_worker_concurrency(
    ctx: typer.Context,
    edge_hostname: HostnameOption,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=MAX_CONCURRENCY,
            help=f"New concurrency, 1 to {MAX_CONCURRENCY}.",
        ),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Hand control back to the worker's --concurrency flag.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Set a worker's concurrency centrally; it adopts the value on its next contact."""
    if reset == (concurrency is not None):
        fail("give exactly one of --concurrency N or --reset", code=2)
    with admin_client(ctx) as client:
        if reset:
            change = client.delete(f"/workers/{edge_hostname}/concurrency")
        else:
            change = client.put(
                f"/workers/{edge_hostname}/concurrency", json={"concurrency": concurrency}
            )
    if output is OutputFormat.JSON:
        print_json(change)
    else:
        print(
            f"{change['hostname']}: concurrency {change['old']} -> {change['new']}"
            f" (desired version {change['desired_version']})"
        )
