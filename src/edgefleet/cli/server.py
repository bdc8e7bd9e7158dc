"""``edgefleet server``: the central API under uvicorn."""

from __future__ import annotations

import gc
import ssl
from pathlib import Path
from typing import Annotated

import typer

from edgefleet.cli.context import fail, settings_of
from edgefleet.cli.startup import collector_paused

#: Allocations between collections of the youngest generation (CPython's default: 700).
GC_THRESHOLD = 50_000


def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate (PEM, chain included)."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="The certificate's private key, unless in --ssl-certfile."),
    ] = None,
    ssl_client_ca: Annotated[
        Path | None,
        typer.Option(
            help="Mutual TLS: every client must show a certificate signed by this CA bundle."
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted "
            "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)."
        ),
    ] = None,
) -> None:
    """Run the central API server (workers and admin commands connect to it)."""
    with collector_paused():
        import uvicorn

        from edgefleet.db.migrate import SchemaNotCurrent
        from edgefleet.server.app import create_app

    if ssl_certfile is not None:
        check_tls_files(ssl_certfile, ssl_keyfile, ssl_client_ca)
    elif ssl_keyfile is not None or ssl_client_ca is not None:
        fail("--ssl-keyfile and --ssl-client-ca need --ssl-certfile", code=2)
    settings = settings_of(ctx)
    try:
        with collector_paused():
            app = create_app(settings)
    except SchemaNotCurrent as exc:
        fail(str(exc))
    notifier = app.state.context.notifier

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            notifier.release_all()  # held long-polls would otherwise delay the shutdown
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_ca_certs=ssl_client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if ssl_client_ca is not None else ssl.CERT_NONE,
    )
    try:
        config.load()  # reads the TLS files: a bad one is a one-line error, not a traceback
    except (OSError, ssl.SSLError) as exc:
        fail(f"TLS: cannot use the server's certificate, key or client CA: {ssl_reason(exc)}")
    tune_garbage_collector()
    Server(config).run()


def check_tls_files(certfile: Path, keyfile: Path | None, client_ca: Path | None) -> None:
    """Load the TLS files once before serving, so a bad one is a one-line error naming it."""
    given = (
        ("--ssl-certfile", certfile),
        ("--ssl-keyfile", keyfile),
        ("--ssl-client-ca", client_ca),
    )
    for flag, path in given:
        if path is not None and not path.is_file():
            fail(f"TLS: {flag} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        files = f"{certfile} and {keyfile}" if keyfile else str(certfile)
        fail(f"TLS: {files}: not a PEM certificate with its private key ({ssl_reason(exc)})")
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            fail(f"TLS: --ssl-client-ca {client_ca}: not a PEM CA bundle ({ssl_reason(exc)})")


def ssl_reason(exc: BaseException) -> str:
    """:func:`edgefleet.tls.ssl_reason`, loaded only for a failure: the clients' TLS module
    imports httpx, which a server never needs."""
    from edgefleet.tls import ssl_reason

    return ssl_reason(exc)


def tune_garbage_collector() -> None:
    """Collect young objects less often, and never rescan the ones start-up made.

    A server holding thousands of worker connections keeps hundreds of thousands of live
    objects; at CPython's default thresholds its cyclic collector rescanned them so often
    that it took half the process's time with a 10,000-worker fleet. Requests make little
    cyclic garbage, so collecting after 50,000 allocations instead of 700 costs a little
    memory and frees most of that time.

    Start-up's objects are frozen as they are, without a collection first: a full pass over
    them cost every start tens of ms of CPU to free about a thousand small leftovers
    (classes and functions made while building the models), which stay.
    """
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
