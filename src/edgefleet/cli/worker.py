"""``edgefleet worker``: run an edge worker on this machine."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Annotated

import typer

from edgefleet.cli.common import fail, settings_of
from edgefleet.settings import MAX_CONCURRENCY

log = logging.getLogger(__name__)

app = typer.Typer(help="Run an edge worker, or manage the one on this machine.")


def parse_queues(value: str) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    if not queues:
        raise typer.BadParameter("give at least one queue, e.g. -q default,gpu")
    return queues


def parse_labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"label {item!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


@app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    edge_hostname: Annotated[
        str | None,
        typer.Option("--edge-hostname", "-H", help="Worker name; defaults to this host's name."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=MAX_CONCURRENCY,
            help="Jobs run at once, until an operator sets it centrally.",
        ),
    ] = 8,
    queues: Annotated[
        str, typer.Option("--queues", "-q", help="Comma-separated queues to take jobs from.")
    ] = "default",
    heartbeat_interval: Annotated[
        float, typer.Option(min=0.05, max=3600, help="Seconds between heartbeats.")
    ] = 30.0,
    poll_interval: Annotated[
        float, typer.Option(min=0.05, max=3600, help="Fallback job poll when long-poll is off.")
    ] = 5.0,
    long_poll: Annotated[
        bool, typer.Option(help="Hold a long-poll so changes and jobs arrive at once.")
    ] = True,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE, repeatable.")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(help="Server URL; defaults to EDGEFLEET_API_URL.")
    ] = None,
) -> None:
    """Run an edge worker in the foreground (SIGTERM drains it; a second one kills its jobs)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgefleet.worker.agent import RegistrationRefused, WorkerAlreadyRunning, WorkerConfig

    settings = settings_of(ctx)
    config = WorkerConfig(
        hostname=edge_hostname or socket.gethostname(),
        concurrency=concurrency,
        queues=parse_queues(queues),
        home=settings.home,
        api_url=api_url or settings.api_url,
        heartbeat_interval=heartbeat_interval,
        poll_interval=poll_interval,
        long_poll=long_poll,
        labels=parse_labels(label or []),
    )
    try:
        asyncio.run(_run(config, settings.signing_secret()))
    except (WorkerAlreadyRunning, RegistrationRefused) as exc:
        fail(str(exc))


async def _run(config, secret: str) -> None:
    from edgefleet.worker.agent import EdgeWorker
    from edgefleet.worker.client import EdgeClient

    client = EdgeClient(config.api_url, config.hostname, secret)
    worker = EdgeWorker(config, client)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    log.info(
        "worker %s starting: concurrency %d, queues %s, server %s",
        config.hostname,
        config.concurrency,
        ",".join(config.queues),
        config.api_url,
    )
    try:
        await worker.run()
    finally:
        await client.aclose()
