"""Fleet admin commands, named as operators know them from the Airflow edge CLI."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefleet.cli.common import HostnameOption, OutputOption
from edgefleet.cli.context import call, resource
from edgefleet.cli.control import Targeting, confirm_or_abort, control_command, report
from edgefleet.cli.output import OutputFormat, print_done, print_json, print_table


def remove_remote_edge_worker(
    ctx: typer.Context,
    edge_hostname: HostnameOption,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Forget a worker that is offline, stopped or revoked (a live one must be shut down first)."""
    call(ctx, "DELETE", resource("workers", edge_hostname))
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
    explained = call(ctx, "GET", resource("workers", edge_hostname, "explain"))
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
