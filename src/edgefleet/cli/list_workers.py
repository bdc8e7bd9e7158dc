"""``edgefleet list-workers``, the most-run read-only command, in plain Click: it starts
without Typer (``edgefleet.cli.lazy``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from edgefleet.cli.context import call, query
from edgefleet.cli.lazy import ClickCommand
from edgefleet.cli.output import OutputFormat, local_time, print_listing, with_ages

WORKER_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("state", "STATE"),
    ("queues", "QUEUES"),
    ("concurrency", "CONCURRENCY"),
    ("concurrency_source", "SOURCE"),
    ("applied_concurrency", "APPLIED"),
    ("versions", "VERSION"),
    ("jobs_running", "RUNNING"),
    ("maintenance_comment", "MAINTENANCE"),
    ("last_heartbeat", "LAST_HEARTBEAT"),
]
#: Times the table shows as ages; JSON keeps them as ISO timestamps.
_TIMES = ("applied_at", "last_heartbeat")


def _readable(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [with_versions(with_expiry(row)) for row in with_ages(workers, _TIMES)]


def with_versions(row: dict[str, Any]) -> dict[str, Any]:
    """Desired and acknowledged version in one cell, ``5/4`` while a change is on its way, so
    the table fits 120 columns; JSON keeps ``desired_version``, ``applied_version`` and
    ``applied_at``."""
    return {**row, "versions": f"{row.get('desired_version')}/{row.get('applied_version')}"}


def with_expiry(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The row with its source saying when an expiring override ends, in local time to the
    minute: ``operator until 14:05`` (with the date when it is not today; JSON keeps the
    exact time)."""
    shown = local_time(row.get("concurrency_until"), now)
    if shown is None:
        return row
    return {**row, "concurrency_source": f"{row['concurrency_source']} until {shown}"}


def worker_states(incomplete: str) -> list[str]:
    """The states ``--state`` takes, for shell completion (the contract loads only then)."""
    from edgefleet.contract import WorkerState

    return [state.value for state in WorkerState if state.value.startswith(incomplete)]


@click.command(
    "list-workers",
    cls=ClickCommand,
    help="One row per worker: desired next to applied values, and when it last checked in.",
)
@click.option(
    "--state",
    "-s",
    metavar="<str>",
    multiple=True,
    help="Only workers in this state.",
    shell_complete=lambda ctx, param, incomplete: worker_states(incomplete),
)
@click.option("--edge-hostname", "-H", metavar="<str>", help="Name or glob, e.g. 'site-a-*'.")
@click.option("--queues", "-q", metavar="<str>", help="Only workers serving any of these.")
@click.option("--selector", "-l", metavar="<str>", help="Labels: KEY=VALUE[,KEY=VALUE].")
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TABLE.value,
    show_default=True,
    metavar="<table|json>",
    help="Print a table or JSON.",
)
@click.pass_context
def list_workers(
    ctx: click.Context,
    state: tuple[str, ...],
    edge_hostname: str | None,
    queues: str | None,
    selector: str | None,
    output: str,
) -> None:
    params = query(
        state=list(state) or None, edge_hostname=edge_hostname, queues=queues, selector=selector
    )
    rows = call(ctx, "GET", "/workers", params=params)
    print_listing(rows, OutputFormat(output), WORKER_COLUMNS, _readable)
