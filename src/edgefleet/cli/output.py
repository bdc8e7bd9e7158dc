"""Printing results as a table for people or JSON for scripts."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Table width when stdout is not a terminal (a pipe, a file, a test).
PLAIN_WIDTH = 120
#: The table of workers' changes that control commands and standing rules print.
CHANGE_COLUMNS = [
    ("hostname", "HOSTNAME"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("desired_version", "DESIRED_V"),
]
#: Age units, largest first: an age is said in the largest unit it has at least one of.
_AGE_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
#: An ISO 8601 date and time, as the API writes them (a value that is a timestamp).
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def console() -> Console:
    """A Rich console as wide as the terminal; ``PLAIN_WIDTH`` when not writing to one (a
    pipe or a file: the same layout whatever ``COLUMNS`` a parent process left set)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PLAIN_WIDTH)


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601; UTC when it names no zone), or None."""
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def age(value: Any, now: datetime | None = None) -> str | None:
    """How long ago ``value`` was, in its largest whole unit: "12s ago", "3m ago", "2h
    ago", "4d ago"; a time ahead of ``now`` reads "in 5s". None (or unreadable) stays None.

    >>> age("2024-01-01T00:00:00Z", datetime(2024, 1, 1, 0, 3, 59, tzinfo=UTC))
    '3m ago'
    """
    moment = parse_time(value)
    if moment is None:
        return None
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    amount = duration(abs(seconds))
    return f"in {amount}" if seconds < 0 and amount != "0s" else f"{amount} ago"


def local_time(value: Any, now: datetime | None = None, seconds: bool = False) -> str | None:
    """``value`` in local time, to the minute (or ``seconds``), with the date only when it
    is not today: "14:05", "2024-05-02 14:05". None (or unreadable) stays None."""
    moment = parse_time(value)
    if moment is None:
        return None
    local, today = moment.astimezone(), (now or datetime.now(UTC)).astimezone().date()
    shown = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return shown if local.date() == today else f"{local:%Y-%m-%d} {shown}"


def readable_value(value: Any, now: datetime | None = None) -> Any:
    """A value as a table shows it: a timestamp (an ISO 8601 string, as the API sends one)
    in local time to the second, anything else as it is."""
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return local_time(value, now, seconds=True) or value
    return value


def with_ages(rows: Iterable[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` with the times under ``keys`` said as ages, for a table (JSON keeps ISO)."""
    now = datetime.now(UTC)
    return [{**row, **{key: age(row.get(key), now) for key in keys}} for row in rows]


def duration(seconds: float) -> str:
    """A span of time in its largest whole unit: 59 -> "59s", 61 -> "1m", 90000 -> "1d"."""
    unit, size = next((u, n) for u, n in _AGE_UNITS if seconds >= n or n == 1)
    return f"{int(max(seconds, 0) // size)}{unit}"


def shell_words(command: Sequence[str] | None) -> str | None:
    """A command as one would type it in a shell: each word quoted only when it must be."""
    return None if command is None else shlex.join(command)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """``columns`` pairs a row key with its heading. One space between columns; names,
    states, counts and ages keep their width, and when the table is wider than the terminal
    the free text (commands, comments) wraps (``edgefleet.cli.fit``)."""
    from edgefleet.cli.fit import FittedTable  # here: JSON output and --help need no Rich

    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    console().print(FittedTable([heading for _, heading in columns], cells))


def print_listing(
    rows: list[dict[str, Any]],
    fmt: OutputFormat,
    columns: Sequence[tuple[str, str]],
    readable: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = list,
    empty: str | None = None,
) -> None:
    """A list from the server: JSON as it came, or a table of the rows ``readable`` makes
    of it (ages, quoting), or the ``empty`` line, when given, for a list with no rows."""
    if fmt is OutputFormat.JSON:
        print_json(rows)
    elif not rows and empty is not None:
        print(empty)
    else:
        print_table(readable(rows), columns)


def print_done(fmt: OutputFormat, name: str, done: str) -> None:
    """What a command did to one named thing: ``{"removed": name}`` or ``name: removed``."""
    if fmt is OutputFormat.JSON:
        print_json({done: name})
    else:
        print(f"{name}: {done}")


def print_rule_change(result: dict[str, Any], fmt: OutputFormat, headline: str) -> None:
    """A standing rule set or removed: JSON as it came, or ``headline`` and the workers the
    change reached (or a line saying there were none)."""
    if fmt is OutputFormat.JSON:
        print_json(result)
        return
    print(headline)
    changes = result["changes"]["changes"]
    if changes:
        print_table(changes, CHANGE_COLUMNS)
    else:
        print("no worker's concurrency changed")


def next_page_hint(
    rows: list[dict[str, Any]], limit: int, command: list[str], options: dict[str, Any]
) -> None:
    """A full page of a newest-first list may have older rows: say on stderr how to get
    them, so stdout stays the list alone: ``command`` again with the ``options`` that were
    given (None or empty ones left out) and ``--before`` the last id shown."""
    if not rows or len(rows) < limit:
        return
    words = list(command)
    for option, value in options.items():
        if value not in (None, ""):
            words += [option, str(value)]
    print(f"more: {shlex.join([*words, '--before', str(rows[-1]['id'])])}", file=sys.stderr)
