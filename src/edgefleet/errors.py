"""The one error tree. Services raise these; the server maps them to HTTP, the CLI to exits.

EdgefleetError
 +-- NotFound        unknown worker or job            -> 404
 +-- Conflict        the request clashes with state  -> 409
 +-- InvalidRequest  well-formed but not acceptable  -> 400
 +-- Unauthorized    missing or bad token            -> 401
 +-- Forbidden       valid token, wrong role/worker  -> 403
 +-- PayloadTooLarge  a size limit was reached        -> 413
 +-- TooManyRequests  a credential's rate limit       -> 429 (with Retry-After)
 +-- ConfigurationError  this process's own set-up is unusable (a bad secret file)
"""

from __future__ import annotations


class EdgefleetError(Exception):
    status_code = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(EdgefleetError):
    status_code = 404
    code = "not_found"


class Conflict(EdgefleetError):
    status_code = 409
    code = "conflict"


class InvalidRequest(EdgefleetError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(EdgefleetError):
    status_code = 401
    code = "unauthorized"


class Forbidden(EdgefleetError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(EdgefleetError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(EdgefleetError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(EdgefleetError):
    """Not the caller's fault: the CLI reports it and exits 2 before doing anything."""

    code = "configuration_error"
