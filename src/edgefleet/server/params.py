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
from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError

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
T = TypeVar("T")


def read_query(model: type[M], request: Request) -> M:
    """``model`` from the request's query string, with a refusal shaped like FastAPI's own
    (422, each issue's ``loc`` starting with ``query``).

    For a route whose query FastAPI should not parse: FastAPI checks each declared query
    parameter on its own, which cost the long-poll, the hottest route, half its calls."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _refused(exc, "query") from None


def read_path(request: Request, name: str, adapter: TypeAdapter[T]) -> T:
    """Path parameter ``name`` checked by ``adapter``, refused as ``read_query`` refuses."""
    try:
        return adapter.validate_python(request.path_params[name])
    except ValidationError as exc:
        raise _refused(exc, "path", name) from None


def _refused(exc: ValidationError, *where: str) -> RequestValidationError:
    """pydantic's issues as FastAPI's refusal, each ``loc`` starting with ``where``."""
    return RequestValidationError([{**e, "loc": (*where, *e["loc"])} for e in exc.errors()])


def request_parameters(
    path: dict[str, TypeAdapter[Any]], query: type[BaseModel], security: str = "HTTPBearer"
) -> dict[str, Any]:
    """The OpenAPI ``parameters`` and ``security`` of a route that reads its request itself
    (``read_path``, ``read_query``, a ``BearerRole`` called directly): its ``openapi_extra``,
    so the schema documents what the route really takes."""
    ref = "#/components/schemas/{model}"
    schema = query.model_json_schema(ref_template=ref)
    required = set(schema.get("required", ()))
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": adapter.json_schema()}
        for name, adapter in path.items()
    ]
    parameters += [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]
    return {"parameters": parameters, "security": [{security: []}]}
