"""The OpenAPI document and its viewers, for token holders (a viewer's token is enough).

Served here instead of by FastAPI itself unless ``EDGEFLEET_PUBLIC_DOCS`` opens them: the
document lists every route an attacker could try. A browser cannot send a bearer token to
``/docs``, so an operator who wants the pages opens them with that setting, or reads
``/openapi.json`` with a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from edgefleet.server.deps import ViewerDep
from edgefleet.server.responses import add_error_schemas

#: FastAPI arguments that switch off its own, open, documentation routes.
CLOSED = {"openapi_url": None, "docs_url": None, "redoc_url": None}

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request, identity: ViewerDep) -> JSONResponse:
    return JSONResponse(_document(request))


@router.get("/docs")
async def swagger(identity: ViewerDep) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="edgefleet API")


@router.get("/redoc")
async def redoc(identity: ViewerDep) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="edgefleet API")


def _document(request: Request) -> dict:
    return request.app.openapi()


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document of ``app`` (built once), with the schemas of the error
    bodies that every API route refers to: ``app.openapi``, whether or not FastAPI serves
    it itself."""
    return add_error_schemas(FastAPI.openapi(app))
