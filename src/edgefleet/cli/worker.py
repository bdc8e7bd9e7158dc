"""``edgefleet worker``: run an edge worker on this machine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Annotated

import typer

from edgefleet import MAX_CONCURRENCY, parsing
from edgefleet.cli.common import OutputOption
from edgefleet.cli.context import fail, parsed, settings_of
from edgefleet.cli.output import OutputFormat, print_json

log = logging.getLogger(__name__)

app = typer.Typer(help="Run an edge worker, or manage the one on this machine.")


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
        list[str] | None,
        typer.Option(
            help="Server URL; several replicas as URL1,URL2 or a repeated option, tried in "
            "turn when one fails. Defaults to EDGEFLEET_API_URL."
        ),
    ] = None,
    grace_period: Annotated[
        float,
        typer.Option(
            min=0,
            max=7 * 24 * 3600,
            help="On SIGTERM, seconds running jobs may take to finish before they are killed.",
        ),
    ] = 600.0,
    report_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            max=24 * 3600,
            help="On SIGTERM, seconds spent delivering what the server is owed; the rest "
            "stays in the spool for the next start.",
        ),
    ] = 10.0,
    join_token: Annotated[
        str | None,
        typer.Option(
            "--join-token",
            help="Enroll with this token from `edgefleet token create-join` (first start "
            "only; defaults to EDGEFLEET_JOIN_TOKEN).",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle to verify the server with; defaults to EDGEFLEET_CA_FILE, "
            "else the system store."
        ),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option(
            help="Certificate shown to a server that requires one (mutual TLS); "
            "defaults to EDGEFLEET_CLIENT_CERT."
        ),
    ] = None,
    client_key: Annotated[
        Path | None,
        typer.Option(
            help="The client certificate's key, unless in the same file; defaults "
            "to EDGEFLEET_CLIENT_KEY."
        ),
    ] = None,
) -> None:
    """Run an edge worker in the foreground (SIGTERM drains it; a second one kills its jobs).

    Its identity: its own credential in EDGEFLEET_HOME (from an earlier enrollment), else a
    new one enrolled with --join-token, else the shared secret if this machine holds it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgefleet.cli.startup import collector_paused

    with collector_paused():
        from edgefleet.api_urls import parse_api_urls
        from edgefleet.errors import TlsFailure
        from edgefleet.tls import ClientConfigError, ClientTls
        from edgefleet.worker.agent import RegistrationRefused, WorkerAlreadyRunning, WorkerConfig
        from edgefleet.worker.credential import EnrollmentError
        from edgefleet.worker.spool import SpoolError

        settings = settings_of(ctx)
    try:
        servers = parse_api_urls(api_url or settings.api_url)
    except ClientConfigError as exc:
        fail(str(exc))
    config = WorkerConfig(
        hostname=edge_hostname or socket.gethostname(),
        concurrency=concurrency,
        queues=parsed(parsing.parse_queues, queues),
        home=settings.home,
        api_url=",".join(servers),
        heartbeat_interval=heartbeat_interval,
        poll_interval=poll_interval,
        long_poll=long_poll,
        labels=parsed(parsing.parse_labels, label or [], "--label"),
        grace_period=grace_period,
        report_timeout=report_timeout,
    )
    tls = ClientTls.from_settings(
        settings, ca_file=ca_file, client_cert=client_cert, client_key=client_key
    )
    try:
        identity = choose_identity(settings, config.hostname, join_token or settings.join_token)
        asyncio.run(_run(config, identity, tls))
    except (
        WorkerAlreadyRunning,
        RegistrationRefused,
        SpoolError,
        EnrollmentError,
        TlsFailure,
        ClientConfigError,
    ) as exc:
        fail(str(exc))


def choose_identity(settings, hostname: str, join_token: str | None) -> tuple[str, str | None]:
    """("credential", join token or None) when the worker has or can get a credential of its
    own, else ("secret", the shared secret); a worker never creates a secret."""
    from edgefleet.worker.credential import credential_path

    join_token = (join_token or "").strip() or None
    if join_token or credential_path(settings.home, hostname).exists():
        return "credential", join_token
    secret = settings.existing_secret()
    if secret is None:
        fail(
            f"worker {hostname!r} has no identity: create a join token on the server with "
            "`edgefleet token create-join` and start it with --join-token (or "
            "EDGEFLEET_JOIN_TOKEN)"
        )
    return "secret", secret


async def _run(config, identity: tuple[str, str | None], tls) -> None:
    from edgefleet.client_auth import BearerAuth
    from edgefleet.worker.agent import EdgeWorker
    from edgefleet.worker.client import EdgeClient
    from edgefleet.worker.credential import CredentialKeeper, CredentialRevoked, credential_path

    kind, value = identity
    keeper: CredentialKeeper | None = None
    auth = BearerAuth("") if kind == "credential" else None
    secret = value if auth is None else None
    client = EdgeClient(config.api_url, config.hostname, secret, auth=auth, tls=tls)
    try:
        await client.check_server()  # a certificate that fails verification: exit now
        if auth is not None:
            path = credential_path(config.home, config.hostname)
            keeper = CredentialKeeper(client, auth, path, value)
            await keeper.start()
    except BaseException:
        await client.aclose()
        raise
    worker = EdgeWorker(config, client, keeper)
    rotation = asyncio.create_task(keeper.keep_fresh()) if keeper else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, worker.request_local_maintenance)
    log.info(
        "worker %s starting: concurrency %d, queues %s, server %s (of %s)",
        config.hostname,
        config.concurrency,
        ",".join(config.queues),
        client.api_url,
        client.servers,
    )
    try:
        await worker.run()
        if worker.refusal is not None:
            raise CredentialRevoked(worker.refusal)
    finally:
        if rotation is not None:
            rotation.cancel()
            await asyncio.gather(rotation, return_exceptions=True)
        await client.aclose()


LocalHostname = Annotated[
    str | None,
    typer.Option("--edge-hostname", "-H", help="Worker name; defaults to this host's name."),
]


def _local_state(ctx: typer.Context, hostname: str | None) -> tuple[str, dict]:
    from edgefleet.worker.statefile import read_state

    name = hostname or socket.gethostname()
    state = read_state(settings_of(ctx).home, name)
    if state is None:
        fail(f"no worker {name!r} has run on this machine (EDGEFLEET_HOME={settings_of(ctx).home})")
    return name, state


def _running_pid(state: dict) -> int | None:
    from edgefleet.worker.statefile import pid_alive

    pid = state.get("pid")
    return pid if state.get("state") != "stopped" and pid_alive(pid) else None


@app.command("status")
def status(
    ctx: typer.Context,
    edge_hostname: LocalHostname = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show the local worker's state from its state file (no server needed).

    "cached: true" means the worker runs on the desired state it last had from the server,
    which it has not reached since it started.

    Exits 0 while the worker runs and 1 when it does not.
    """
    name, state = _local_state(ctx, edge_hostname)
    running = _running_pid(state) is not None
    state = {**state, "running": running}
    if not running and state.get("state") != "stopped":
        state["state"] = f"not running (last known: {state.get('state')})"
    if output is OutputFormat.JSON:
        print_json(state)
    else:
        for key in (
            "hostname",
            "state",
            "pid",
            "concurrency",
            "concurrency_source",
            "concurrency_until",
            "cached",
            "queues",
            "maintenance",
            "maintenance_comment",
            "running_jobs",
            "api_url",
            "started_at",
            "last_contact",
        ):
            value = state.get(key)
            if isinstance(value, list):
                value = ",".join(str(v) for v in value) or "-"
            print(f"{key:20} {value if value is not None else '-'}")
    if not running:
        raise typer.Exit(1)


@app.command("stop")
def stop(
    ctx: typer.Context,
    edge_hostname: LocalHostname = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the worker has exited.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds --wait waits.")] = 300.0,
) -> None:
    """Stop the local worker gracefully: running jobs finish, no new ones start."""
    name, state = _local_state(ctx, edge_hostname)
    pid = _running_pid(state)
    if pid is None:
        fail(f"worker {name!r} is not running")
    os.kill(pid, signal.SIGTERM)
    print(f"worker {name}: stop requested (pid {pid})")
    if wait:
        from edgefleet.worker.statefile import pid_alive

        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                fail(f"worker {name!r} still running after {timeout:g}s")
            time.sleep(0.1)
        print(f"worker {name}: stopped")


@app.command("maintenance")
def maintenance(
    ctx: typer.Context,
    mode: Annotated[str, typer.Argument(help="on or off")],
    edge_hostname: LocalHostname = None,
    comments: Annotated[
        str | None, typer.Option("--comments", "-c", help="Why (recorded centrally).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With 'on': wait until running jobs have drained.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds --wait waits.")] = 300.0,
) -> None:
    """Switch the local worker's maintenance mode; the worker forwards it to the server."""
    from edgefleet.worker.statefile import read_state, write_control

    if mode not in ("on", "off"):
        fail(f"mode must be 'on' or 'off', not {mode!r}", code=2)
    name, state = _local_state(ctx, edge_hostname)
    pid = _running_pid(state)
    if pid is None:
        fail(f"worker {name!r} is not running")
    home = settings_of(ctx).home
    write_control(home, name, {"maintenance": mode == "on", "comments": comments})
    os.kill(pid, signal.SIGUSR1)
    print(f"worker {name}: maintenance {mode} requested")
    if wait:
        wanted = "maintenance" if mode == "on" else None
        deadline = time.monotonic() + timeout
        while True:
            current = (read_state(home, name) or {}).get("state")
            if (
                (current == wanted)
                if wanted
                else current not in ("maintenance", "maintenance_pending")
            ):
                break
            if time.monotonic() > deadline:
                fail(f"worker {name!r} is {current} after {timeout:g}s")
            time.sleep(0.1)
        print(f"worker {name}: {current}")


@app.command(
    "install-service",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def install_service(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the unit and its environment file (values hidden); write nothing.",
        ),
    ] = False,
    unit_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the unit; default /etc/systemd/system, or "
            "~/.config/systemd/user with --user."
        ),
    ] = None,
    user: Annotated[
        bool, typer.Option("--user", help="For your own user's systemd (systemctl --user).")
    ] = False,
    enable: Annotated[
        bool,
        typer.Option("--enable", help="Then run systemctl daemon-reload and enable --now."),
    ] = False,
) -> None:
    """Write a systemd unit that runs this worker: -H NAME, then any `edgefleet worker` options.

    Restart on failure; the join token in a file of mode 0600, never in the unit; on stop
    only the worker gets SIGTERM, and it drains its jobs within --grace-period.
    """
    from edgefleet.cli.worker_service import install

    install(ctx, dry_run=dry_run, unit_dir=unit_dir, user=user, enable=enable)
