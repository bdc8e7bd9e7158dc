"""Property-based calls of one OpenAPI operation against a live server (schemathesis and
hypothesis). Imported by the fuzz test itself, not at collection: these two libraries take
seconds to import, which every test process would pay otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Valid inputs, then out-of-schema ones.
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Target(Protocol):
    """The live server as the fuzzing sees it (the fuzz test's ``Fleet``)."""

    url: str

    def headers_for(self, path: str) -> dict[str, str]: ...

    def aim(self, case: schemathesis.Case, own_instance: bool) -> None: ...

    def follow(self, case: schemathesis.Case, response: Any) -> None: ...


def operations(url: str, headers: dict[str, str]) -> list[Any]:
    """Every operation of the server's OpenAPI document."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(
    target: Target,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    path_parameters: dict[str, str] | None,
    shrink: bool,
) -> str | None:
    """Run ``examples`` of one operation; the first failure, or None. The quick profile
    reports a failing example as found; with ``shrink`` it is shrunk first."""
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    headers = target.headers_for(operation.path)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else []),
        report_multiple_bugs=False,
    )
    @given(case=strategy, own_instance=st.booleans())
    def run(case: schemathesis.Case, own_instance: bool) -> None:
        target.aim(case, own_instance)
        response = case.call_and_validate(
            base_url=target.url, headers=headers, checks=CHECKS, timeout=30
        )
        target.follow(case, response)

    try:
        run()
    except Unsatisfiable:  # no input of this operation can break its schema: nothing to negate
        assert mode is GenerationMode.NEGATIVE, operation.label
    except (AssertionError, BaseExceptionGroup) as exc:  # failed checks: report with the others
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


def timed(fuzz_one: Callable[..., str | None], target: Any, operation: Any, mode: Any):
    """``fuzz_one(target, operation, mode)``, printing how long it took."""
    started = time.monotonic()
    try:
        return fuzz_one(target, operation, mode)
    finally:
        print(f"{time.monotonic() - started:6.2f} s  {operation.label} [{mode.value}]")
