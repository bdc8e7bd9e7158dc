"""``edgefleet db ...``: schema migrations of the central database."""

from __future__ import annotations

import typer

from edgefleet.cli.common import fail, settings_of


def _engine(ctx: typer.Context):
    from edgefleet.db.session import make_engine  # heavy: only for db commands

    return make_engine(settings_of(ctx).database_url)


app = typer.Typer(
    help="Create, upgrade and check the central database schema.", no_args_is_help=True
)


@app.command("migrate")
def migrate_command(ctx: typer.Context) -> None:
    """Create the database or upgrade it to the latest schema (safe to run again)."""
    from edgefleet.db import migrate

    engine = _engine(ctx)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    if before == after:
        print(f"database already at the latest revision {after}")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")


@app.command("downgrade")
def downgrade_command(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help="Target revision, or 'base' for an empty schema."),
) -> None:
    """Go back to an older schema revision."""
    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        migrate.downgrade(engine, revision)
    except Exception as exc:  # alembic raises several types for unknown revisions
        fail(f"cannot downgrade to {revision!r}: {exc}")
    print(f"database now at revision {migrate.current_revision(engine) or 'base'}")


@app.command("check")
def check_command(ctx: typer.Context) -> None:
    """Exit 0 if the schema is current, 1 (with the reason) if not."""
    from edgefleet.db import migrate

    engine = _engine(ctx)
    try:
        migrate.require_current(engine)
    except migrate.SchemaNotCurrent as exc:
        fail(str(exc))
    print(f"database schema is current ({migrate.head_revision()})")
