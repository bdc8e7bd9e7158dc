"""How clients (workers, the CLI) reach the server: its URL, TLS, and what a failure says.

The server's certificate is verified against the system's trust store (which also honours
OpenSSL's ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), or against the CA bundle given by
``--ca-file`` / ``EDGEFLEET_CA_FILE`` alone. A server that requires a client certificate
(mutual TLS) is shown the one given by ``--client-cert`` / ``--client-key``.

A certificate that cannot be verified is a configuration problem, not an outage: it is said
in one line that names the problem and what to give, never as a traceback.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# httpx loads its own command-line tool whenever click, rich and pygments are installed (as
# they are, for typer): a sixth of a worker's start-up, for a tool no edgefleet process runs.
# Marking the module absent makes httpx skip it; a worker imports this module before httpx.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

if TYPE_CHECKING:
    from edgefleet.settings import Settings

CA_HINT = "give --ca-file / EDGEFLEET_CA_FILE"
CLIENT_CERT_HINT = "give --client-cert [--client-key] / EDGEFLEET_CLIENT_CERT [_KEY]"


class ClientConfigError(ValueError):
    """The API URL or a TLS file cannot be used; the message is one line saying why."""


@dataclass(frozen=True)
class ClientTls:
    """The files a client uses for TLS; all optional."""

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> ClientTls:
        """Flags given on the command line win over ``EDGEFLEET_*`` settings."""
        return cls(
            ca_file=ca_file or settings.ca_file,
            client_cert=client_cert or settings.client_cert,
            client_key=client_key or settings.client_key,
        )

    def verify_for(self, urls: Iterable[str]) -> ssl.SSLContext | bool:
        """The ``verify=`` value for a client of ``urls``: :meth:`ssl_context`, or False for
        plain-HTTP servers and no TLS files given, which skips loading the system's CA
        bundle (tens of milliseconds of every start). Given TLS files are always checked."""
        files = (self.ca_file, self.client_cert, self.client_key)
        if any(files) or any(urlsplit(url).scheme.lower() == "https" for url in urls):
            return self.ssl_context()
        return False

    def ssl_context(self) -> ssl.SSLContext:
        """The ``verify=`` value for httpx: verification on, with these files loaded."""
        if self.client_key is not None and self.client_cert is None:
            raise ClientConfigError("TLS: a client key needs its certificate (--client-cert)")
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ClientConfigError(
                f"TLS: cannot use the CA file {self.ca_file}: {ssl_reason(exc)}"
            ) from exc
        if self.client_cert is not None:
            key = str(self.client_key) if self.client_key is not None else None
            try:
                context.load_cert_chain(str(self.client_cert), key)
            except (OSError, ssl.SSLError) as exc:
                raise ClientConfigError(
                    f"TLS: cannot use the client certificate {self.client_cert}"
                    f"{f' with key {key}' if key else ''}: {ssl_reason(exc)}"
                ) from exc
        return context


def check_api_url(url: str) -> str:
    """The server's base URL without a trailing slash, or a one-line error."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ClientConfigError(f"bad API URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ClientConfigError(
            f"bad API URL {url!r}: give http://HOST:PORT or https://HOST[:PORT] "
            "(--api-url or EDGEFLEET_API_URL)"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ClientConfigError(
            f"bad API URL {url!r}: port {parsed.port} is not between 1 and 65535"
        )
    return url.rstrip("/")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as failure messages name the server."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def describe_tls_failure(exc: BaseException, server: str) -> str | None:
    """One line naming the TLS problem under ``exc`` (raised reaching ``server``), or None
    when the failure had nothing to do with TLS."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            problem = cause.verify_message or ssl_reason(cause)
            return f"TLS: cannot verify {server}: certificate verify failed: {problem} ({CA_HINT})"
        if isinstance(cause, ssl.SSLError):
            reason = ssl_reason(cause)
            if "certificate required" in reason or "bad certificate" in reason:
                return f"TLS: {server} refused this client: {reason} ({CLIENT_CERT_HINT})"
            if "wrong version number" in reason or "record layer failure" in reason:
                return f"TLS: {server} does not speak HTTPS ({reason}): is the URL right?"
            return f"TLS: cannot connect to {server}: {reason}"
    return None


def _causes(exc: BaseException):
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def ssl_reason(exc: BaseException) -> str:
    """OpenSSL's words without the ``[SSL: CODE]`` prefix and ``(_ssl.c:NNN)`` suffix."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if text.startswith("[SSL"):
        text = text.split("] ", 1)[-1]
    return text.split(" (_ssl.c:", 1)[0].strip()


def disconnect_hint(exc: BaseException, server: str, tls: ClientTls) -> str:
    """A hint for a connection that an HTTPS server closed without answering: that is how a
    server that requires a client certificate (mutual TLS) refuses a client without one, or
    with one it does not trust, as its TLS alert is seldom delivered. Empty otherwise."""
    if not isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) or not server.startswith(
        "https:"
    ):
        return ""
    if tls.client_cert is None:
        return f" (if the server requires a client certificate, {CLIENT_CERT_HINT})"
    return (
        f" (if the server requires a client certificate, it may not accept {tls.client_cert}: "
        "is it signed by the CA the server trusts?)"
    )
