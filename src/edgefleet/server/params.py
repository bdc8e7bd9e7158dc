"""Path and query parameters with the same bounds as the wire contract.

A query string arrives as text, so these are lax (``"7"`` is 7) where the body's types are
strict, but the bounds are the contract's: an id or a version past what a column holds, or a
time no UTC clock reaches, is a 422 naming the parameter, never a database error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ValidationError

from edgefleet.contract import DB_INT_MAX, HOST_PATTERN_SYNTAX, INSTANCE_ID_SYNTAX

JobIdPath = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="The job's id")]
#: A count or version given in a query.
CountQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX)]
InstanceQuery = Annotated[str, Query(min_length=1, max_length=64, pattern=INSTANCE_ID_SYNTAX)]
#: A worker's name, or a glob over names.
HostPatternQuery = Annotated[
    str | None, Query(min_length=1, max_length=255, pattern=HOST_PATTERN_SYNTAX)
]
#: The paging cursor of a newest-first list: only rows with a smaller id (the last id of
#: the page before).
BeforeQuery = Annotated[
    int | None, Query(ge=1, le=DB_INT_MAX, description="Only ids below this one (next page)")
]
#: ``ATTEMPT:SEQ`` as a log read returned it (checked by ``jobs.parse_cursor``: 400).
LogCursorQuery = Annotated[str | None, Query(max_length=64)]


def _as_utc(value: datetime) -> datetime:
    """A naive time is UTC; an aware one is moved to UTC, which must exist."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range once moved to UTC") from None


SinceQuery = Annotated[
    datetime | None,
    AfterValidator(lambda value: None if value is None else _as_utc(value)),
    Query(description="ISO 8601; without a zone, UTC"),
]

M = TypeVar("M", bound=BaseModel)


def read_query(model: type[M], request: Request) -> M:
    """``model`` from the request's query string, with a refusal shaped like FastAPI's own
    (422, each issue's ``loc`` starting with ``query``).

    For a route whose query FastAPI should not parse: FastAPI checks each declared query
    parameter on its own, which cost the long-poll, the hottest route, half its calls."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        issues = [{**issue, "loc": ("query", *issue["loc"])} for issue in exc.errors()]
        raise RequestValidationError(issues) from None


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``parameters`` of a query read by ``read_query`` (a route's
    ``openapi_extra``), so the schema documents what the route really takes."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    return {
        "parameters": [
            {"name": name, "in": "query", "required": name in required, "schema": field}
            for name, field in schema["properties"].items()
        ]
    }
