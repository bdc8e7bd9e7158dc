"""Control commands: change workers' desired state, one worker or many at once.

Each takes a target: ``-H NAME`` (a name, or a glob such as ``'site-a-*'``), ``--selector
KEY=VALUE[,...]`` (worker labels) or ``--all``. Each prints every worker touched, and with
``--wait`` blocks until every targeted online worker has acknowledged the change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from edgefleet import parsing
from edgefleet.cli.api import AdminClient
from edgefleet.cli.common import OutputOption, admin_client, fail, parsed
from edgefleet.cli.output import OutputFormat, print_json, print_table
from edgefleet.settings import MAX_CONCURRENCY

TargetHostname = Annotated[
    str | None,
    typer.Option("--edge-hostname", "-H", help="Worker name, or a glob like 'site-a-*'."),
]
Selector = Annotated[
    str | None, typer.Option("--selector", "-l", help="Worker labels: KEY=VALUE[,KEY=VALUE].")
]
AllWorkers = Annotated[bool, typer.Option("--all", help="Every worker.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="Block until every targeted online worker acknowledged.")
]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds --wait waits.")]
Queues = Annotated[str, typer.Option("--queues", "-q", help="Comma-separated queue names.")]
Comments = Annotated[str, typer.Option("--comments", "-c", help="Why (kept in the audit log).")]

#: States in which a worker cannot acknowledge anything now; it will when it is back.
NOT_ONLINE = frozenset({"offline", "stopped", "unknown"})

CHANGE_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("desired_version", "DESIRED_V"),
]


def parse_selector(text: str) -> dict[str, str]:
    return parsed(parsing.parse_selector, text)


def build_target(hostname: str | None, selector: str | None, all_workers: bool) -> dict[str, Any]:
    given = sum([hostname is not None, selector is not None, all_workers])
    if given != 1:
        fail("name the workers with exactly one of -H/--edge-hostname, --selector or --all", 2)
    if all_workers:
        return {"all": True}
    if selector is not None:
        return {"selector": parse_selector(selector)}
    return {"edge_hostname": hostname}


#: Seconds between two looks of ``--wait``: short at first (a worker is woken at once and
#: usually acknowledges within a moment), then growing to at most ``MAX_POLL``.
FIRST_POLL = 0.1
MAX_POLL = 1.0


def target_query(target: dict[str, Any]) -> dict[str, str]:
    """The ``/workers`` filter that lists the workers a change targeted: the same name, glob
    or selector (the server narrows its read with it), or nothing for ``--all``."""
    if target.get("edge_hostname") is not None:
        return {"edge_hostname": target["edge_hostname"]}
    if target.get("selector"):
        return {"selector": parsing.format_selector(target["selector"])}
    return {}


def wait_for_acks(
    client: AdminClient,
    versions: dict[str, int],
    timeout: float,
    target: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], list[str]]:
    """Poll until each online targeted worker's applied version reaches its desired one;
    each look asks only about the targeted workers.

    Returns (workers that did not acknowledge in time, workers skipped as not online).
    """
    deadline = time.monotonic() + timeout
    query = target_query(target or {})
    pause = FIRST_POLL
    while True:
        rows = {row["hostname"]: row for row in client.get("/workers", params=query)}
        skipped = sorted(h for h in versions if rows.get(h, {}).get("state") in NOT_ONLINE)
        pending = sorted(
            h
            for h, version in versions.items()
            if h in rows and h not in skipped and rows[h]["applied_version"] < version
        )
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return pending, skipped
        sleep(min(pause, left))
        pause = min(MAX_POLL, pause * 1.5)


def run_change(
    ctx: typer.Context,
    action: str,
    body: dict[str, Any],
    output: OutputFormat,
    wait: bool = False,
    timeout: float = 30.0,
) -> None:
    """POST one control action, print what it touched, optionally wait for acknowledgements."""
    with admin_client(ctx) as client:
        result = client.post(f"/workers/actions/{action}", json=body)
        pending: list[str] = []
        skipped: list[str] = []
        if wait:
            pending, skipped = wait_for_acks(client, result["versions"], timeout, body)
    if output is OutputFormat.JSON:
        print_json(
            {**result, "not_acknowledged": pending, "not_online": skipped} if wait else result
        )
    else:
        _print_changes(result)
        if skipped:
            print(f"not online, will apply on return: {', '.join(skipped)}")
        if wait and not pending:
            print("acknowledged by every targeted online worker")
    if pending:
        fail(f"not acknowledged within {timeout:g}s by: {', '.join(pending)}")


def _print_changes(result: dict[str, Any]) -> None:
    changed = {change["hostname"] for change in result["changes"]}
    if result["changes"]:
        print_table(result["changes"], CHANGE_COLUMNS)
    for hostname in result["workers"]:
        if hostname not in changed:
            print(f"{hostname}: unchanged (desired version {result['versions'][hostname]})")


def set_worker_concurrency(
    ctx: typer.Context,
    edge_hostname: TargetHostname = None,
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
        bool, typer.Option("--reset", help="Hand control back to each worker's --concurrency flag.")
    ] = False,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Set workers' concurrency centrally; each adopts it at once, without restart."""
    if reset == (concurrency is not None):
        fail("give exactly one of --concurrency N or --reset", code=2)
    body = build_target(edge_hostname, selector, all_workers)
    body.update({"reset": True} if reset else {"concurrency": concurrency})
    run_change(ctx, "set-concurrency", body, output, wait, timeout)


def add_worker_queues(
    ctx: typer.Context,
    queues: Queues,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Make workers also take jobs from these queues."""
    body = build_target(edge_hostname, selector, all_workers)
    body["queues"] = _queue_list(queues)
    run_change(ctx, "add-queues", body, output, wait, timeout)


def remove_worker_queues(
    ctx: typer.Context,
    queues: Queues,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Stop workers taking jobs from these queues (a worker keeps at least one queue)."""
    body = build_target(edge_hostname, selector, all_workers)
    body["queues"] = _queue_list(queues)
    run_change(ctx, "remove-queues", body, output, wait, timeout)


def reset_worker_queues(
    ctx: typer.Context,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Hand workers' queues back to their own --queues flag."""
    body = build_target(edge_hostname, selector, all_workers)
    run_change(ctx, "reset-queues", body, output, wait, timeout)


def request_maintenance(
    ctx: typer.Context,
    comments: Comments,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Drain workers: they finish running jobs, take no new ones, and report maintenance."""
    body = build_target(edge_hostname, selector, all_workers)
    body["comments"] = comments
    run_change(ctx, "request-maintenance", body, output, wait, timeout)


def exit_maintenance(
    ctx: typer.Context,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Let workers in maintenance take jobs again."""
    body = build_target(edge_hostname, selector, all_workers)
    run_change(ctx, "exit-maintenance", body, output, wait, timeout)


def update_maintenance_comment(
    ctx: typer.Context,
    comments: Comments,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    all_workers: AllWorkers = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change the comment of workers already in maintenance."""
    body = build_target(edge_hostname, selector, all_workers)
    body["comments"] = comments
    run_change(ctx, "update-maintenance-comment", body, output)


def shutdown_remote_worker(
    ctx: typer.Context,
    edge_hostname: TargetHostname = None,
    selector: Selector = None,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Ask workers to finish their running jobs and then exit cleanly."""
    body = build_target(edge_hostname, selector, False)
    run_change(ctx, "shutdown", body, output, wait, timeout)


def shutdown_all_workers(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Ask every worker to finish its jobs and exit."""
    if not yes:
        try:
            confirmed = typer.confirm("Shut down ALL edge workers?", default=False)
        except typer.Abort:
            confirmed = False
        if not confirmed:
            fail("aborted; nothing changed (use --yes to skip this question)")
    run_change(ctx, "shutdown", {"all": True}, output, wait, timeout)


def _queue_list(text: str) -> list[str]:
    return parsed(parsing.parse_queues, text)
