"""``edgefleet db ...``: schema migrations of the central database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from edgefleet.cli.context import fail, settings_of

app = typer.Typer(
    help="Create, upgrade and check the central database schema.", no_args_is_help=True
)


@contextmanager
def _database(ctx: typer.Context, failing: str) -> Iterator:
    """The engine of the configured database; errors end the command with ``failing: why``."""
    from alembic.util import CommandError  # heavy: only for db commands
    from sqlalchemy.exc import OperationalError

    from edgefleet.db.migrate import MigrationError
    from edgefleet.db.session import make_engine

    engine = make_engine(settings_of(ctx).database_url)
    try:
        yield engine
    except (MigrationError, CommandError) as exc:
        fail(f"{failing}: {exc}")
    except OperationalError as exc:
        fail(f"{failing}: cannot use the database {engine.url!r}: {exc.orig}")
    finally:
        engine.dispose()


@app.command("migrate")
def migrate_command(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="Target revision (default: the latest).")
    ] = "head",
) -> None:
    """Create the database or upgrade it to the latest schema (safe to run again, and at once
    from several hosts: one migrates, the others wait and find nothing left to do).

    Tables created before version tracking are recognised by their shape and upgraded from
    the revision they match.
    """
    from edgefleet.db import migrate

    with _database(ctx, "cannot migrate") as engine:
        result = migrate.upgrade(engine, to)
    start = result.before or result.adopted
    if result.adopted is not None:
        print(f"existing tables without version tracking match revision {result.adopted}: stamped")
    if result.after == start:
        print(f"database already at revision {result.after}")
    else:
        print(f"database upgraded from {start or 'empty'} to {result.after}")


@app.command("downgrade")
def downgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for no tables.")],
) -> None:
    """Go back to an older schema revision (data in dropped tables and columns is lost)."""
    from edgefleet.db import migrate

    with _database(ctx, f"cannot downgrade to {revision!r}") as engine:
        result = migrate.downgrade(engine, revision)
    print(f"database downgraded from {result.before} to {result.after or 'base'}")


@app.command("check")
def check_command(ctx: typer.Context) -> None:
    """Exit 0 if the schema is the one this edgefleet needs, 1 (with the reason) if not."""
    from edgefleet.db import migrate

    with _database(ctx, "cannot check") as engine:
        status = migrate.schema_status(engine)
    if not status.is_current:
        fail("; ".join(status.problems))
    print(f"database schema is current ({status.head})")


@app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Print the database's revision and the latest one this edgefleet knows."""
    from edgefleet.db import migrate

    with _database(ctx, "cannot read the revision") as engine:
        status = migrate.schema_status(engine)
    if status.current is not None:
        current = status.current
    elif status.detected is not None:
        current = f"untracked (tables match {status.detected})"
    else:
        current = "none"
    print(f"current: {current}")
    print(f"latest:  {status.head}")
    for problem in status.problems:
        print(f"note:    {problem}")
