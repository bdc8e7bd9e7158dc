"""What every command shares: settings from the context and error-to-exit conversion."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from edgefleet.cli.api import AdminClient, ApiError
from edgefleet.cli.output import OutputFormat
from edgefleet.settings import Settings

OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Print a table or JSON.")
]
HostnameOption = Annotated[
    str, typer.Option("--edge-hostname", "-H", help="The worker's hostname.")
]


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.find_root().obj


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def admin_client(ctx: typer.Context) -> Iterator[AdminClient]:
    """An API client whose errors end the command with a message and exit code 1."""
    try:
        client = AdminClient(settings_of(ctx))
    except ApiError as exc:  # no credentials, an unreadable token or TLS file, a bad URL
        fail(str(exc))
    try:
        yield client
    except ApiError as exc:
        fail(str(exc))
    finally:
        client.close()
