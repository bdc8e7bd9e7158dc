"""``edgefleet audit``: who changed what, when, from what to what, and why."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from edgefleet.cli.common import OutputOption
from edgefleet.cli.context import call, fail, query
from edgefleet.cli.output import (
    OutputFormat,
    next_page_hint,
    print_listing,
    readable_value,
    with_ages,
)

AUDIT_COLUMNS = [
    ("at", "TIME"),
    ("actor", "ACTOR"),
    ("target", "WORKER"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("comment", "COMMENT"),
]
#: Times the table shows as ages, and values it shows in local time when they are
#: timestamps; JSON keeps ISO timestamps.
_TIMES = ("at",)
_VALUES = ("old", "new")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def for_table(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as the table shows them: when each was made as an age, and old and new values
    that are timestamps in local time, so that no column is a 30-character ISO string."""
    now = datetime.now(UTC)
    return [
        {**entry, **{key: readable_value(entry.get(key), now) for key in _VALUES}}
        for entry in with_ages(entries, _TIMES)
    ]


def parse_since(text: str) -> datetime:
    """An ISO time (UTC if no zone is given) or an age such as 30s, 15m, 2h, 7d."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"bad --since {text!r}: give an ISO time or an age like 15m, 2h, 7d", code=2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit(
    ctx: typer.Context,
    edge_hostname: Annotated[
        str | None, typer.Option("--edge-hostname", "-H", help="Only this worker.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time or age (15m, 2h, 7d).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 10000,
    before: Annotated[
        int | None,
        typer.Option(min=1, help="Only entries older than this id (the next page's cursor)."),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Every control change, newest first: time, actor, worker, field, old -> new, comment.

    A full page ends with a note on stderr naming the --before ID of the next one."""
    params = query(
        limit=limit,
        edge_hostname=edge_hostname or None,
        since=parse_since(since).isoformat() if since else None,
        before=before,
    )
    entries = call(ctx, "GET", "/audit", params=params)
    print_listing(entries, output, AUDIT_COLUMNS, for_table)
    given = {"--edge-hostname": edge_hostname, "--since": since, "--limit": limit}
    next_page_hint(entries, limit, ["edgefleet", "audit"], given)
