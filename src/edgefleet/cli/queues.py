"""Queue commands: fleet-wide caps on a queue's running jobs, and every queue at a glance."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgefleet import parsing
from edgefleet.cli.common import OutputOption
from edgefleet.cli.context import call, fail, parsed, resource
from edgefleet.cli.output import OutputFormat, duration, print_json, print_listing

QUEUE_COLUMNS = [
    ("queue", "QUEUE"),
    ("cap", "CAP"),
    ("running", "RUNNING"),
    ("queued", "QUEUED"),
    ("oldest_queued", "OLDEST_QUEUED"),
]
#: Largest cap the server stores (an INTEGER column).
MAX_CAP = 2**31 - 1


def set_queue_concurrency(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="The queue to cap, e.g. gpu.")],
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", help="At most this many of its jobs run at once."),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Lift the queue's cap.")] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Cap how many jobs of a queue run at once across the whole fleet (--reset lifts it)."""
    body = _cap_body(queue, concurrency, reset)
    change = call(ctx, "PUT", resource("queues", queue), json=body)
    if output is OutputFormat.JSON:
        print_json(change)
    elif change["changed"]:
        print(f"{queue}: cap {_cap(change['old'])} -> {_cap(change['new'])}")
    else:
        print(f"{queue}: unchanged (cap {_cap(change['new'])})")


def _cap_body(queue: str, concurrency: int | None, reset: bool) -> dict[str, Any]:
    """The request's body; bad input ends the command (exit 2) before anything is sent."""
    if reset == (concurrency is not None):
        fail("give exactly one of --concurrency N or --reset", code=2)
    if "," in queue:
        fail(f"--queue: one queue at a time, not {queue!r}", code=2)
    parsed(parsing.parse_queues, queue, "--queue")
    if concurrency is not None and not 1 <= concurrency <= MAX_CAP:
        fail(f"--concurrency must be 1 to {MAX_CAP}, not {concurrency}", code=2)
    return {"reset": True} if reset else {"concurrency": concurrency}


def _cap(value: int | None) -> str:
    return "none" if value is None else str(value)


def list_queues(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """One row per queue: its cap, running and queued jobs, and how long the oldest waits."""
    queues = call(ctx, "GET", "/queues")
    print_listing(queues, output, QUEUE_COLUMNS, lambda rows: [_readable(q) for q in rows])


def _readable(queue: dict[str, Any]) -> dict[str, Any]:
    age = queue.get("oldest_queued_age_seconds")
    return {**queue, "oldest_queued": None if age is None else f"{duration(age)} ago"}
