"""Printing results as a table for people or JSON for scripts."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """``columns`` pairs a row key with its heading."""
    from rich.console import Console  # here: JSON output and --help need no Rich
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    Console(width=200).print(table)


def emit(data: Any, fmt: OutputFormat, columns: Sequence[tuple[str, str]]) -> None:
    if fmt is OutputFormat.JSON:
        print_json(data)
    else:
        print_table(data if isinstance(data, list) else [data], columns)


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
