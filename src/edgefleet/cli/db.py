"""``edgefleet db ...``: schema migrations of the central database."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefleet.cli.common import fail, settings_of


def _engine(ctx: typer.Context):
    from edgefleet.db.session import make_engine  # heavy: only for db commands

    return make_engine(settings_of(ctx).database_url)


app = typer.Typer(
    help="Create, upgrade and check the central database schema.", no_args_is_help=True
)


@app.command("migrate")
def migrate_command(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target revision (default: the latest).")] = (
        "head"
    ),
) -> None:
    """Create the database or upgrade it to the latest schema (safe to run again, and at once
    from several hosts: one migrates, the others wait and find nothing left to do).

    Tables created before version tracking are recognised by their shape and upgraded from
    the revision they match.
    """
    from alembic.util import CommandError

    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        result = migrate.upgrade(engine, to)
    except (migrate.MigrationError, CommandError) as exc:
        fail(f"cannot migrate: {exc}")
    finally:
        engine.dispose()
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
    from alembic.util import CommandError

    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        result = migrate.downgrade(engine, revision)
    except (migrate.MigrationError, CommandError) as exc:
        fail(f"cannot downgrade to {revision!r}: {exc}")
    finally:
        engine.dispose()
    print(f"database downgraded from {result.before} to {result.after or 'base'}")


@app.command("check")
def check_command(ctx: typer.Context) -> None:
    """Exit 0 if the schema is the one this edgefleet needs, 1 (with the reason) if not."""
    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        status = migrate.schema_status(engine)
    finally:
        engine.dispose()
    if not status.is_current:
        fail("; ".join(status.problems))
    print(f"database schema is current ({status.head})")


@app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Print the database's revision and the latest one this edgefleet knows."""
    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        status = migrate.schema_status(engine)
    finally:
        engine.dispose()
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
