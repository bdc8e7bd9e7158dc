"""``edgefleet server``: the central API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefleet.cli.common import fail, settings_of


def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the central API server (workers and admin commands connect to it)."""
    import uvicorn

    from edgefleet.db.migrate import SchemaNotCurrent
    from edgefleet.server.app import create_app

    settings = settings_of(ctx)
    try:
        app = create_app(settings)
    except SchemaNotCurrent as exc:
        fail(str(exc))
    notifier = app.state.context.notifier

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            notifier.release_all()  # held long-polls would otherwise delay the shutdown
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5
    )
    Server(config).run()
