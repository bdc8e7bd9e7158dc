"""Printing results as a table for people or JSON for scripts."""

from __future__ import annotations

import json
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
