"""The options Typer commands share, written once (``edgefleet.cli.context`` holds what
every command shares)."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefleet import MAX_CONCURRENCY
from edgefleet.cli.output import OutputFormat

OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Print a table or JSON.")
]
HostnameOption = Annotated[
    str, typer.Option("--edge-hostname", "-H", help="The worker's hostname.")
]
ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency", "-c", min=1, max=MAX_CONCURRENCY, help=f"1 to {MAX_CONCURRENCY}."
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Beyond EDGEFLEET_MAX_CONCURRENCY_PER_CPU for a worker.")
]
SelectorOption = Annotated[
    str | None,
    typer.Option("--selector", "-l", help="The workers' labels: KEY=VALUE[,KEY=VALUE]."),
]
