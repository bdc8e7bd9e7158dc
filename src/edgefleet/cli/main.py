"""The ``edgefleet`` command: one entry point for server, worker and operators."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgefleet import __version__
from edgefleet.cli.common import CliOptions
from edgefleet.cli.lazy import LazyCommand, lazy_group
from edgefleet.errors import ConfigurationError

_CONTROL = "edgefleet.cli.control"

#: Every top-level command: its module, loaded only when it runs, and its one-line help
#: (``tests/unit/test_cli_startup.py`` checks each against the command's own).
COMMANDS = {
    "db": LazyCommand(
        "edgefleet.cli.db:app", "Create, upgrade and check the central database schema."
    ),
    "worker": LazyCommand(
        "edgefleet.cli.worker:app", "Run an edge worker, or manage the one on this machine."
    ),
    "jobs": LazyCommand("edgefleet.cli.jobs:app", "Inspect and cancel jobs."),
    "token": LazyCommand(
        "edgefleet.cli.token:app", "Operator tokens (with roles) and join tokens for new workers."
    ),
    "server": LazyCommand(
        "edgefleet.cli.server:server",
        "Run the central API server (workers and admin commands connect to it).",
    ),
    "submit": LazyCommand(
        "edgefleet.cli.jobs:submit",
        "Queue a job: `edgefleet submit [OPTIONS] -- CMD ARG...` (run without a shell).",
    ),
    "logs": LazyCommand(
        "edgefleet.cli.jobs:logs",
        "Print a job's captured stdout and stderr (all attempts, in order).",
    ),
    "cancel": LazyCommand(
        "edgefleet.cli.jobs:cancel",
        "Cancel jobs: a queued one never starts; a running one is killed on its worker.",
    ),
    "list-workers": LazyCommand(
        "edgefleet.cli.workers:list_workers",
        "One row per worker: desired next to applied values, and when it last checked in.",
    ),
    "workers": LazyCommand(
        "edgefleet.cli.workers:app", "Inspect workers: where their settings come from."
    ),
    "concurrency-rule": LazyCommand(
        "edgefleet.cli.concurrency_rules:app",
        "Standing concurrency for label groups and the whole fleet.",
    ),
    "schedule": LazyCommand(
        "edgefleet.cli.schedules:app",
        "Windows of time in which label groups run at a given concurrency.",
    ),
    "remove-remote-edge-worker": LazyCommand(
        "edgefleet.cli.workers:remove_remote_edge_worker",
        "Forget a worker that is offline, stopped or revoked (a live one must be shut down first).",
    ),
    "revoke-remote-edge-worker": LazyCommand(
        "edgefleet.cli.workers:revoke_remote_edge_worker",
        "Revoke workers' credentials: their next request is refused.",
    ),
    "set-worker-concurrency": LazyCommand(
        f"{_CONTROL}:set_worker_concurrency",
        "Set workers' concurrency centrally; each adopts it at once, without restart.",
    ),
    "add-worker-queues": LazyCommand(
        f"{_CONTROL}:add_worker_queues", "Make workers also take jobs from these queues."
    ),
    "remove-worker-queues": LazyCommand(
        f"{_CONTROL}:remove_worker_queues",
        "Stop workers taking jobs from these queues (a worker keeps at least one queue).",
    ),
    "reset-worker-queues": LazyCommand(
        f"{_CONTROL}:reset_worker_queues", "Hand workers' queues back to their own --queues flag."
    ),
    "remote-edge-worker-request-maintenance": LazyCommand(
        f"{_CONTROL}:request_maintenance",
        "Drain workers: they finish running jobs, take no new ones, and report maintenance.",
    ),
    "remote-edge-worker-exit-maintenance": LazyCommand(
        f"{_CONTROL}:exit_maintenance", "Let workers in maintenance take jobs again."
    ),
    "remote-edge-worker-update-maintenance-comment": LazyCommand(
        f"{_CONTROL}:update_maintenance_comment",
        "Change the comment of workers already in maintenance.",
    ),
    "shutdown-remote-edge-worker": LazyCommand(
        f"{_CONTROL}:shutdown_remote_worker",
        "Ask workers to finish their running jobs and then exit cleanly.",
    ),
    "shutdown-all-workers": LazyCommand(
        f"{_CONTROL}:shutdown_all_workers", "Ask every worker to finish its jobs and exit."
    ),
    "set-queue-concurrency": LazyCommand(
        "edgefleet.cli.queues:set_queue_concurrency",
        "Cap how many jobs of a queue run at once across the whole fleet (--reset lifts it).",
    ),
    "list-queues": LazyCommand(
        "edgefleet.cli.queues:list_queues",
        "One row per queue: its cap, running and queued jobs, and how long the oldest waits.",
    ),
    "audit": LazyCommand(
        "edgefleet.cli.audit:audit",
        "Every control change, newest first: time, actor, worker, field, old -> new, comment.",
    ),
    "top": LazyCommand(
        "edgefleet.cli.top:top",
        "A live view of the fleet: workers and their concurrency, queues, latest changes.",
    ),
    "ui-token": LazyCommand(
        "edgefleet.cli.token:ui_token",
        "Print an admin token for the web UI (GET /ui) on stdout; anyone holding it is admin.",
    ),
}

app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="edgefleet: run jobs on edge workers and steer them centrally at runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with Rich would import Rich for every --help.
    rich_markup_mode=None,
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
    api_url: Annotated[
        list[str] | None,
        typer.Option(
            help="Server URL (EDGEFLEET_API_URL); several replicas as URL1,URL2 or a repeated "
            "option, the next tried when one fails."
        ),
    ] = None,
) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    flags = {
        "token_file": token_file,
        "ca_file": ca_file,
        "client_cert": client_cert,
        "client_key": client_key,
        "api_url": ",".join(api_url) if api_url else None,
    }
    ctx.obj = CliOptions({name: value for name, value in flags.items() if value is not None})


def run() -> None:
    try:
        app()
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
