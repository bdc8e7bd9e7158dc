"""The one error tree, for both ends of the API.

Services raise these; the server's handlers turn them into HTTP answers (``status_code``,
``code``). The clients turn answers back into the same classes: the worker's client through
``refusal()`` (a 409 the server raised as ``Conflict`` reaches the worker as ``Conflict``),
plus the failures only a client sees (``ServerUnavailable``, ``TlsFailure``). The CLI says
each as a one-line message and an exit code.

EdgefleetError
 +-- ConfigurationError     this process's own set-up is unusable (a bad secret file)
 +-- Refused                4xx: the same request again is refused again; do not retry it
 |    +-- InvalidRequest     400  well-formed but not acceptable (a client reads 422 so too)
 |    +-- Unauthorized       401  missing, bad, expired or revoked token: for a worker, its
 |    |                           credential or join token is dead (enroll again, or stop)
 |    +-- Forbidden          403  valid token, wrong role, or not this worker's (job, name)
 |    +-- NotFound           404  unknown worker, job or token
 |    +-- Conflict           409  the request clashes with state (an ended job, an
 |    |                           attempt no longer current, a name already enrolled)
 |    +-- PayloadTooLarge    413  a size limit was reached (a job's log)
 |    +-- NotRegistered      404/409 to a worker's own calls (heartbeat, watch, fetch,
 |                                maintenance): the server does not know this process as
 |                                the worker (deleted, or replaced): register again
 +-- Unavailable            no answer to act on yet: try the same request again later
 |    +-- TooManyRequests    429  a credential's rate limit (``retry_after`` seconds)
 |    +-- ServerUnavailable  (client) no connection, a timeout or a 5xx (the worker moves
 |         |                      to the next replica), or an answer that is not the API's
 |         +-- TlsFailure    (client) TLS failed: that replica is left; at start-up a
 |                                configuration problem
 +-- ApiError               (CLI, ``edgefleet.cli.api``) a command's call failed
"""

from __future__ import annotations


class EdgefleetError(Exception):
    status_code = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(EdgefleetError):
    """Not the caller's fault: the CLI reports it and exits 2 before doing anything."""

    code = "configuration_error"


class Refused(EdgefleetError):
    """The server will not carry out this request. ``detail`` is the server's reason; on
    the client side ``status_code`` is the status actually answered."""

    status_code = 400
    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail: object = message


class InvalidRequest(Refused):
    status_code = 400
    code = "invalid_request"


class Unauthorized(Refused):
    status_code = 401
    code = "unauthorized"


class Forbidden(Refused):
    status_code = 403
    code = "forbidden"


class NotFound(Refused):
    status_code = 404
    code = "not_found"


class Conflict(Refused):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(Refused):
    status_code = 413
    code = "payload_too_large"


class NotRegistered(Refused):
    """Raised by the worker's client only, for a 404 or 409 to a call that needs this
    process to be the worker the server knows."""

    code = "not_registered"


class Unavailable(EdgefleetError):
    """Nothing was refused: the same request may work later."""

    status_code = 503
    code = "unavailable"


class TooManyRequests(Unavailable):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnavailable(Unavailable):
    """Raised by a client: the server could not be reached or failed (5xx)."""

    code = "server_unavailable"


class TlsFailure(ServerUnavailable):
    """TLS failed (the server's certificate cannot be verified, or the server refused ours).
    At start-up a configuration problem; in a running worker treated as an outage. The
    message is one line naming the problem."""

    code = "tls_failure"


#: The client's side of the mapping: an answered status -> the class the server raised.
_BY_STATUS: dict[int, type[Refused]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def refusal(status_code: int, detail: object, kind: type[Refused] | None = None) -> Refused:
    """A 4xx answer (not 429) as the class of this tree the server raised for it (a status
    the tree has no class for: a plain ``Refused``), or as ``kind`` where the caller knows
    better what the answer means."""
    cls = kind or _BY_STATUS.get(status_code, Refused)
    exc = cls(f"{status_code}: {detail}")
    exc.status_code, exc.detail = status_code, detail
    return exc
