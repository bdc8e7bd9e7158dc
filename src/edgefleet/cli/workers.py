"""Fleet admin commands, named as operators know them from the Airflow edge CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from edgefleet.cli.common import HostnameOption, OutputOption, call, query
from edgefleet.cli.control import Targeting, confirm_or_abort, control_command, report
from edgefleet.cli.output import (
    OutputFormat,
    parse_time,
    print_done,
    print_json,
    print_listing,
    print_table,
    with_ages,
)

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


def list_workers(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help="Only workers in this state.")
    ] = None,
    edge_hostname: Annotated[
        str | None, typer.Option("--edge-hostname", "-H", help="Name or glob, e.g. 'site-a-*'.")
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-q", help="Only workers serving any of these.")
    ] = None,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Labels: KEY=VALUE[,KEY=VALUE].")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """One row per worker: desired next to applied values, and when it last checked in."""
    params = query(
        state=state or None, edge_hostname=edge_hostname, queues=queues, selector=selector
    )
    print_listing(call(ctx, "GET", "/workers", params=params), output, WORKER_COLUMNS, _readable)


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
    until = parse_time(row.get("concurrency_until"))
    if until is None:
        return row
    local, today = until.astimezone(), (now or datetime.now().astimezone()).date()
    shown = f"{local:%H:%M}"
    if local.date() != today:
        shown = f"{local:%Y-%m-%d} {shown}"
    return {**row, "concurrency_source": f"{row['concurrency_source']} until {shown}"}


def remove_remote_edge_worker(
    ctx: typer.Context,
    edge_hostname: HostnameOption,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Forget a worker that is offline, stopped or revoked (a live one must be shut down first)."""
    call(ctx, "DELETE", f"/workers/{edge_hostname}")
    print_done(output, edge_hostname, "removed")


@control_command(wait=False)
def revoke_remote_edge_worker(
    ctx: typer.Context,
    targeting: Targeting,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --all: do not ask for confirmation.")
    ] = False,
) -> None:
    """Revoke workers' credentials: their next request is refused, their running jobs are
    treated as an offline worker's, and enrolling again needs a new join token."""
    target = targeting.target()
    if targeting.all_workers:
        confirm_or_abort("Revoke the credentials of ALL edge workers?", yes)
    report(
        ctx, targeting, target, lambda client: client.post("/workers/actions/revoke", json=target)
    )


# --- edgefleet workers ... -----------------------------------------------------------------

app = typer.Typer(help="Inspect workers: where their settings come from.")

LAYER_COLUMNS = [
    ("layer", "LAYER"),
    ("concurrency", "CONCURRENCY"),
    ("rule", "RULE"),
    ("in_force", "IN_FORCE"),
    ("note", "NOTE"),
]


@app.command("explain")
def explain(
    ctx: typer.Context, edge_hostname: HostnameOption, output: OutputOption = OutputFormat.TABLE
) -> None:
    """Every layer of a worker's concurrency, highest first, and the one in force and why."""
    explained = call(ctx, "GET", f"/workers/{edge_hostname}/explain")
    if output is OutputFormat.JSON:
        print_json(explained)
        return
    named = explained["concurrency_rule"] or explained.get("concurrency_schedule")
    rule = f" {named}" if named else ""
    applied = explained["applied_concurrency"]
    print(
        f"{explained['hostname']}: concurrency {explained['concurrency']} from "
        f"{explained['concurrency_source']}{rule}; applied {'-' if applied is None else applied} "
        f"(desired version {explained['desired_version']}, applied "
        f"{explained['applied_version']})"
    )
    print(f"why: {explained['why']}")
    rows = [{**row, "in_force": "yes" if row["in_force"] else ""} for row in explained["layers"]]
    print_table(rows, LAYER_COLUMNS)
