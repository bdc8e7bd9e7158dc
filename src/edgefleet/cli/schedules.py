"""``edgefleet schedule ...``: windows of time in which label groups run at a concurrency.

``schedule add --selector site=plant1 --cron '0 22 * * *' --for 8h -c 16`` gives the workers
with those labels 16 from 22:00 for eight hours, every day, in the time zone given with
``--timezone`` (UTC unless told). While a window is open it ranks above the label rules and
below an operator's override: a change made by hand during a window wins until it is reset
(or expires), and then the window applies again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from edgefleet import cron_windows, parsing
from edgefleet.cli.common import OutputOption, admin_client, fail, parsed
from edgefleet.cli.output import OutputFormat, print_json, print_table
from edgefleet.settings import MAX_CONCURRENCY

app = typer.Typer(help="Windows of time in which label groups run at a given concurrency.")

LIST_COLUMNS = [
    ("name", "NAME"),
    ("selector", "SELECTOR"),
    ("cron", "CRON"),
    ("timezone", "TIMEZONE"),
    ("for", "FOR"),
    ("concurrency", "C"),
    ("active", "ACTIVE"),
    ("next_local", "NEXT_START"),
    ("next_utc", "NEXT_START_UTC"),
]
CHANGE_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("desired_version", "DESIRED_V"),
]


def span(seconds: int) -> str:
    """``28800`` -> ``8h``: the largest unit that says it exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _window_seconds(text: str) -> int:
    seconds = parsing.parse_duration(text)
    if seconds != int(seconds):
        raise ValueError(f"bad duration {text!r}: give whole seconds")
    return cron_windows.check_duration(int(seconds))


@app.command("add")
def add(
    ctx: typer.Context,
    cron: Annotated[
        str, typer.Option("--cron", help="When windows start: 'MIN HOUR DOM MON DOW'.")
    ],
    duration: Annotated[
        str, typer.Option("--for", help="How long each window stays open: 30m, 8h, 1d.")
    ],
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, max=MAX_CONCURRENCY, help=f"1 to {MAX_CONCURRENCY}."
        ),
    ],
    selector: Annotated[
        str | None,
        typer.Option("--selector", "-l", help="The workers' labels: KEY=VALUE[,KEY=VALUE]."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every worker (no selector).")] = False,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone of --cron, e.g. Europe/Berlin.")
    ] = "UTC",
    name: Annotated[
        str | None, typer.Option("--name", help="Name it (default: from the selector).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Beyond EDGEFLEET_MAX_CONCURRENCY_PER_CPU for a worker."),
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Add a schedule; if its window is open now, matching workers adopt it at once."""
    if every == (selector is not None):
        fail("name the workers with exactly one of --selector KEY=VALUE or --all", code=2)
    body: dict[str, Any] = {
        "cron": parsed(cron_windows.check_cron, cron, "--cron"),
        "timezone": parsed(lambda z: cron_windows.zone(z).key, timezone, "--timezone"),
        "duration_seconds": parsed(_window_seconds, duration, "--for"),
        "concurrency": concurrency,
        "force": force,
    }
    if every:
        body["all"] = True
    else:
        body["selector"] = parsed(parsing.parse_selector, selector, "--selector")
    if name is not None:
        body["name"] = name
    with admin_client(ctx) as client:
        result = client.post("/schedules", json=body)
    _report(result, output)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name (see `schedule list`).")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Remove a schedule; workers its open window decided for fall to the next layer."""
    with admin_client(ctx) as client:
        result = client.delete(f"/schedules/{name}")
    _report(result, output)


def _row(schedule: dict[str, Any]) -> dict[str, Any]:
    local, utc = schedule["next_start_local"], schedule["next_start"]
    end = schedule["window_end"]
    return {
        **schedule,
        "selector": schedule["selector"] or "(all)",
        "for": span(schedule["duration_seconds"]),
        "active": f"until {_moment(end)} UTC" if end else "no",
        "next_local": _moment(local, offset=True) if local else None,
        "next_utc": _moment(utc) if utc else None,
    }


def _moment(text: str, *, offset: bool = False) -> str:
    when = datetime.fromisoformat(text)
    shown = f"{when:%Y-%m-%d %H:%M}"
    return f"{shown}{when:%z}" if offset else shown


@app.command("list")
def list_schedules(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """Every schedule: when its windows start (in its zone and in UTC), whether one is open."""
    with admin_client(ctx) as client:
        schedules = client.get("/schedules")
    if output is OutputFormat.JSON:
        print_json(schedules)
    elif not schedules:
        print("no schedules")
    else:
        print_table([_row(s) for s in schedules], LIST_COLUMNS)


def _report(result: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print_json(result)
        return
    schedule = result["schedule"]
    if result["removed"]:
        print(f"schedule {schedule['name']}: removed")
    else:
        state = "window open now" if schedule["active"] else "window closed now"
        print(f"schedule {schedule['name']}: added ({state})")
    changes = result["changes"]["changes"]
    if changes:
        print_table(changes, CHANGE_COLUMNS)
    else:
        print("no worker's concurrency changed")
