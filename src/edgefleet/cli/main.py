"""The ``edgefleet`` command: one entry point for server, worker and operators."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from edgefleet import __version__
from edgefleet.cli import audit, control, db, jobs, server, token, worker, workers
from edgefleet.errors import ConfigurationError
from edgefleet.settings import Settings

app = typer.Typer(
    help="edgefleet: run jobs on edge workers and steer them centrally at runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="A file holding the operator token to use (instead of EDGEFLEET_TOKEN).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle to verify an HTTPS server with (EDGEFLEET_CA_FILE; default: the "
            "system store).",
        ),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option(help="Client certificate for mutual TLS (EDGEFLEET_CLIENT_CERT)."),
    ] = None,
    client_key: Annotated[
        Path | None,
        typer.Option(help="Its key, unless in the same file (EDGEFLEET_CLIENT_KEY)."),
    ] = None,
) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        ctx.obj = Settings(**({"token_file": token_file} if token_file is not None else {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"EDGEFLEET_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        print(f"error: bad configuration: {problems}", file=sys.stderr)
        raise typer.Exit(2) from None
    flags = {"ca_file": ca_file, "client_cert": client_cert, "client_key": client_key}
    given = {name: value for name, value in flags.items() if value is not None}
    if given:
        ctx.obj = ctx.obj.model_copy(update=given)


app.add_typer(db.app, name="db")
app.add_typer(worker.app, name="worker")
app.add_typer(jobs.app, name="jobs")
app.add_typer(token.app, name="token")
app.command("server")(server.server)
app.command("submit")(jobs.submit)
app.command("logs")(jobs.logs)
app.command("cancel")(jobs.cancel)
app.command("list-workers")(workers.list_workers)
app.command("remove-remote-edge-worker")(workers.remove_remote_edge_worker)
app.command("revoke-remote-edge-worker")(workers.revoke_remote_edge_worker)
app.command("set-worker-concurrency")(control.set_worker_concurrency)
app.command("add-worker-queues")(control.add_worker_queues)
app.command("remove-worker-queues")(control.remove_worker_queues)
app.command("reset-worker-queues")(control.reset_worker_queues)
app.command("remote-edge-worker-request-maintenance")(control.request_maintenance)
app.command("remote-edge-worker-exit-maintenance")(control.exit_maintenance)
app.command("remote-edge-worker-update-maintenance-comment")(control.update_maintenance_comment)
app.command("shutdown-remote-edge-worker")(control.shutdown_remote_worker)
app.command("shutdown-all-workers")(control.shutdown_all_workers)
app.command("audit")(audit.audit)
app.command("ui-token")(token.ui_token)


def run() -> None:
    try:
        app()
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
