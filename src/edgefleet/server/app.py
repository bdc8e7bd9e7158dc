"""The app factory: one FastAPI app per settings object, nothing built at import time."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet import __version__
from edgefleet.contract import API_PREFIX
from edgefleet.db import sqlite
from edgefleet.db.migrate import require_current
from edgefleet.db.session import make_engine, make_sessionmaker
from edgefleet.errors import EdgefleetError, TooManyRequests
from edgefleet.server.context import ServerContext
from edgefleet.server.limits import BodyLimits
from edgefleet.server.notifier import Notifier
from edgefleet.server.responses import ERROR_RESPONSES, error_code, validation_issues
from edgefleet.server.routes import (
    audit,
    concurrency_rules,
    docs,
    edge,
    health,
    jobs,
    metrics,
    queues,
    schedules,
    tokens,
    ui,
    workers,
)
from edgefleet.server.sweeper import Sweeper
from edgefleet.settings import Settings


def build_context(settings: Settings) -> ServerContext:
    engine = make_engine(settings.database_url)
    return ServerContext(
        settings=settings,
        engine=engine,
        db=make_sessionmaker(engine),
        notifier=Notifier(),
        secret=settings.signing_secret(),
    )


def create_app(settings: Settings, *, check_schema: bool = True) -> FastAPI:
    context = build_context(settings)
    if check_schema:
        require_current(context.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.notifier.bind(asyncio.get_running_loop())
        bridge = None
        if context.engine.dialect.name == "postgresql":
            from edgefleet.server.pgnotify import PostgresBridge

            bridge = PostgresBridge(context.engine, context.notifier)
            bridge.start()
        sweeper = Sweeper(context)
        sweeper.start()
        checkpointer = sqlite.background_checkpoints(context.engine)
        # FastAPI builds an included router's routes on its first request (tens of ms for
        # the workers' routes): build the edge and workers routes now, not on the first
        # worker's registration or the first fleet-wide change. Looking a route up builds
        # the routers included before it too.
        app.url_path_for("change_workers")
        yield
        await sweeper.stop()
        if checkpointer is not None:
            checkpointer.stop()
        if bridge is not None:
            await bridge.stop()
        context.threads.shutdown(wait=False)
        context.engine.dispose()

    app = FastAPI(
        title="edgefleet",
        version=__version__,
        description="Central API for edge workers (worker API under /edge) and operators.",
        lifespan=lifespan,
        # Metrics are Prometheus' (/metrics). FastAPI's OpenTelemetry hooks would otherwise
        # look for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # The API's map is for token holders unless the operator opens it (docs.py).
        **({} if settings.public_docs else docs.CLOSED),
    )
    app.state.context = context
    app.openapi = partial(docs.document, app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimits, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(EdgefleetError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(edge.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(workers.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(jobs.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(audit.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(queues.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(concurrency_rules.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(schedules.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(tokens.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    if not settings.public_docs:
        app.include_router(docs.router)
    app.include_router(ui.router)
    app.include_router(metrics.router)
    return app


async def _domain_error(request: Request, exc: EdgefleetError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(
        {"error": exc.code, "detail": exc.message}, status_code=exc.status_code, headers=headers
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = validation_issues(exc.errors())
    return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals (an unparsable body, an unknown path or method) in the
    same shape as every other error."""
    return JSONResponse(
        {"error": error_code(exc.status_code), "detail": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )
