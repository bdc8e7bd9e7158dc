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
from edgefleet.cli.common import ConcurrencyOption, ForceOption, OutputOption, SelectorOption
from edgefleet.cli.context import call, parsed, resource, selector_or
from edgefleet.cli.output import OutputFormat, print_listing, print_rule_change

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
    return cron_windows.check_duration(int(seconds), given=text)


@app.command("add")
def add(
    ctx: typer.Context,
    cron: Annotated[
        str, typer.Option("--cron", help="When windows start: 'MIN HOUR DOM MON DOW'.")
    ],
    duration: Annotated[
        str, typer.Option("--for", help="How long each window stays open: 30m, 8h, 1d.")
    ],
    concurrency: ConcurrencyOption,
    selector: SelectorOption = None,
    every: Annotated[bool, typer.Option("--all", help="Every worker (no selector).")] = False,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone of --cron, e.g. Europe/Berlin.")
    ] = "UTC",
    name: Annotated[
        str | None, typer.Option("--name", help="Name it (default: from the selector).")
    ] = None,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Add a schedule; if its window is open now, matching workers adopt it at once."""
    workers = selector_or(selector, every, "all", "the workers")
    body: dict[str, Any] = {
        "cron": parsed(cron_windows.check_cron, cron, "--cron"),
        "timezone": parsed(lambda z: cron_windows.zone(z).key, timezone, "--timezone"),
        "duration_seconds": parsed(_window_seconds, duration, "--for"),
        "concurrency": concurrency,
        "force": force,
        **workers,
    }
    if name is not None:
        body["name"] = name
    _report(call(ctx, "POST", "/schedules", json=body), output)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name (see `schedule list`).")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Remove a schedule; workers its open window decided for fall to the next layer."""
    _report(call(ctx, "DELETE", resource("schedules", name)), output)


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
    schedules = call(ctx, "GET", "/schedules")
    print_listing(
        schedules, output, LIST_COLUMNS, lambda rows: [_row(s) for s in rows], empty="no schedules"
    )


def _report(result: dict[str, Any], output: OutputFormat) -> None:
    schedule = result["schedule"]
    if result["removed"]:
        headline = f"schedule {schedule['name']}: removed"
    else:
        state = "window open now" if schedule["active"] else "window closed now"
        headline = f"schedule {schedule['name']}: added ({state})"
    print_rule_change(result, output, headline)
