"""Error answers as the OpenAPI document declares them.

Every error the API gives has the same body, ``{"error": code, "detail": ...}`` (see the
exception handlers in ``app``); declaring it on each route keeps the document honest, so a
client generated from it, or a fuzzer checking answers against it, knows what a 4xx holds.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from edgefleet.contract import ErrorBody


class ValidationIssue(BaseModel):
    """One reason a request was refused: where (``["body", "labels", "site"]``) and why."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    error: str
    detail: list[ValidationIssue]


_ERRORS = {
    400: "The request is well-formed but not acceptable",
    401: "Missing, unknown or expired token",
    403: "The token may not do this",
    404: "No such worker or job",
    409: "The request clashes with the current state",
    413: "The request body or the job's log is too large",
    429: "Too many requests: retry after the time in Retry-After",
}

#: For ``include_router(..., responses=ERROR_RESPONSES)``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()},
    422: {
        "model": ValidationErrorBody,
        "description": "A value is missing, malformed or out of bounds",
    },
}


def validation_issues(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors as ``ValidationIssue`` dicts. Keys of a refused map come back in
    ``loc``; one that no UTF-8 can hold (an unpaired surrogate) is shown replaced, so the
    refusal itself can always be sent."""
    return [
        {
            "loc": [part if isinstance(part, int) else _text(part) for part in e.get("loc", ())],
            "msg": _text(e.get("msg", "")),
            "type": _text(e.get("type", "")),
        }
        for e in errors
    ]


def _text(value: object) -> str:
    return str(value).encode("utf-8", "replace").decode("utf-8")


def error_code(status_code: int) -> str:
    """``"method_not_allowed"`` for 405: the code of an error the framework raised."""
    try:
        return "_".join(HTTPStatus(status_code).phrase.lower().split())
    except ValueError:
        return "error"
