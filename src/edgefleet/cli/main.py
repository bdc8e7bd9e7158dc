"""The ``edgefleet`` command: one entry point for server, worker and operators.

The root group and its options are plain Click, so ``--help`` and ``--version`` import
neither Typer nor any command module (``edgefleet.cli.lazy``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from edgefleet import __version__
from edgefleet.cli.context import CliOptions
from edgefleet.cli.lazy import LazyCommand, LazyCommands
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
        "edgefleet.cli.list_workers:list_workers",
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

_COMPLETE_VAR = "_EDGEFLEET_COMPLETE"
_PATH = click.Path(path_type=Path)


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        print(__version__)
        ctx.exit()


def _completion(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--install-completion`` and ``--show-completion``: Typer's shell scripts, which call
    ``edgefleet`` back with ``_EDGEFLEET_COMPLETE`` set (``complete``)."""
    if value and not ctx.resilient_parsing:
        from typer import completion

        done = completion.install_callback if param.name == "install_completion" else None
        (done or completion.show_callback)(ctx, param, value)


@click.group(
    cls=LazyCommands,
    table=COMMANDS,
    help="edgefleet: run jobs on edge workers and steer them centrally at runtime.",
    no_args_is_help=True,
)
@click.option(
    "--log-level",
    metavar="<str>",
    default="INFO",
    show_default=True,
    help="DEBUG, INFO, WARNING or ERROR.",
)
@click.option(
    "--token-file",
    type=_PATH,
    metavar="<path>",
    help="A file holding the operator token to use (instead of EDGEFLEET_TOKEN).",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print version.",
)
@click.option(
    "--ca-file",
    type=_PATH,
    metavar="<path>",
    help="CA bundle to verify an HTTPS server with (EDGEFLEET_CA_FILE; default: the system store).",
)
@click.option(
    "--client-cert",
    type=_PATH,
    metavar="<path>",
    help="Client certificate for mutual TLS (EDGEFLEET_CLIENT_CERT).",
)
@click.option(
    "--client-key",
    type=_PATH,
    metavar="<path>",
    help="Its key, unless in the same file (EDGEFLEET_CLIENT_KEY).",
)
@click.option(
    "--api-url",
    metavar="<str>",
    multiple=True,
    help="Server URL (EDGEFLEET_API_URL); several replicas as URL1,URL2 or a repeated "
    "option, the next tried when one fails.",
)
@click.option(
    "--install-completion",
    is_flag=True,
    expose_value=False,
    callback=_completion,
    help="Install completion for the current shell.",
)
@click.option(
    "--show-completion",
    is_flag=True,
    expose_value=False,
    callback=_completion,
    help="Show completion for the current shell, to copy it or customize the installation.",
)
@click.pass_context
def app(ctx: click.Context, log_level: str, api_url: tuple[str, ...], **paths: Any) -> None:
    import logging

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    flags = {**paths, "api_url": ",".join(api_url) if api_url else None}
    given = ctx.get_parameter_source("log_level") is click.core.ParameterSource.COMMANDLINE
    ctx.obj = CliOptions(
        {name: value for name, value in flags.items() if value is not None},
        log_level=log_level if given else None,
    )


def _complete() -> None:
    """Answer a shell's completion request, inside commands too (``edgefleet.cli.completion``)."""
    from edgefleet.cli.completion import answer

    sys.exit(answer(app, "edgefleet", _COMPLETE_VAR, os.environ[_COMPLETE_VAR]))


def run() -> None:
    if os.environ.get(_COMPLETE_VAR):
        _complete()
    try:
        app.main(prog_name="edgefleet")
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
