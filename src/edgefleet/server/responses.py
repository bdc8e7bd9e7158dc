"""Error answers as the OpenAPI document declares them.

Every error the API gives has the same body, ``{"error": code, "detail": ...}`` (see the
exception handlers in ``app``); declaring it on each route keeps the document honest, so a
client generated from it, or a fuzzer checking answers against it, knows what a 4xx holds.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import Schema
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from edgefleet.contract import PATTERN_WORDS, ErrorBody


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

#: The bodies the error answers refer to, as the document names them.
ERROR_MODELS = (ErrorBody, ValidationErrorBody)
SCHEMAS = "#/components/schemas/"


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"{SCHEMAS}{model.__name__}"}}}


#: For ``include_router(..., responses=ERROR_RESPONSES)``. The bodies are references, not
#: ``"model"`` entries: FastAPI would build a validator of each model for every route and
#: status (over 400 of them: tens of ms of CPU at each server start, as many again on the
#: other routes' first requests) only to write the document; :func:`add_error_schemas` puts
#: the referred schemas into it.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{code: {"description": text, "content": _body(ErrorBody)} for code, text in _ERRORS.items()},
    422: {
        "description": "A value is missing, malformed or out of bounds",
        "content": _body(ValidationErrorBody),
    },
}


def add_error_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (an OpenAPI document, changed in place) with the schemas of the error
    bodies among its components, in the components' sorted order."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if all(model.__name__ in schemas for model in ERROR_MODELS):
        return document
    generator = GenerateJsonSchema(ref_template=SCHEMAS + "{model}")
    _, found = generator.generate_definitions(
        [(model, "serialization", model.__pydantic_core_schema__) for model in ERROR_MODELS]
    )
    # Through FastAPI's own model of a schema, as the rest of the document went.
    found = {
        name: jsonable_encoder(Schema(**schema), by_alias=True, exclude_none=True)
        for name, schema in found.items()
    }
    merged = {**found, **schemas}
    document["components"]["schemas"] = {name: merged[name] for name in sorted(merged)}
    return document


def validation_issues(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors as ``ValidationIssue`` dicts. Keys of a refused map come back in
    ``loc``; one that no UTF-8 can hold (an unpaired surrogate) is shown replaced, so the
    refusal itself can always be sent."""
    return [
        {
            "loc": [part if isinstance(part, int) else _text(part) for part in e.get("loc", ())],
            "msg": _text(_message(e)),
            "type": _text(e.get("type", "")),
        }
        for e in errors
    ]


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, but a name that breaks its syntax is told what the syntax allows
    in words rather than shown the regular expression."""
    if error.get("type") == "string_pattern_mismatch":
        words = PATTERN_WORDS.get((error.get("ctx") or {}).get("pattern"))
        if words:
            return f"not allowed here: {words}"
    return error.get("msg", "")


def _text(value: object) -> str:
    return str(value).encode("utf-8", "replace").decode("utf-8")


def error_code(status_code: int) -> str:
    """``"method_not_allowed"`` for 405: the code of an error the framework raised."""
    try:
        return "_".join(HTTPStatus(status_code).phrase.lower().split())
    except ValueError:
        return "error"
