"""The operator web UI: static HTML, CSS and JS served by the API server itself.

The page holds no secrets: the operator pastes a token (an operator token from ``edgefleet
token create``, or an admin token from ``edgefleet ui-token``), which the browser keeps in
sessionStorage and sends as a bearer token to the API. The page asks ``/api/v1/whoami`` whose
token it is and shows only what that role may do (the API refuses the rest anyway); worker
credentials and join tokens cannot sign in. The content security policy allows only this
server's own scripts, styles and API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from edgefleet.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Small files, no build step: always revalidate so an upgrade shows at once.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False, tags=["ui"])


def _asset(name: str) -> Response:
    """A file directly inside the static folder; anything else (``..``, subfolders) is 404."""
    path = STATIC_DIR / name
    media_type = _MEDIA_TYPES.get(path.suffix)
    if "/" in name or "\\" in name or media_type is None or not path.is_file():
        raise NotFound(f"no UI asset named {name!r}")
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
@router.get("/ui/")
def ui_index() -> Response:
    return _asset("index.html")


@router.get("/ui/{name}")
def ui_asset(name: str) -> Response:
    return _asset(name)
