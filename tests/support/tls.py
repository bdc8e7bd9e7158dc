"""Certificates for tests, made on the spot by a throwaway CA (``trustme``).

``make_tls(directory)`` writes PEM files for a server on 127.0.0.1 / localhost, a client
certificate, and both CAs' certificates, and returns their paths. ``client_context()`` is what
the test harness itself verifies a TLS server with (it shows the client certificate, so it
also passes a server that requires one).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    #: The CA that signed the server's and the client's certificates.
    ca: Path
    #: The server's certificate chain and key, in one file.
    server: Path
    #: A client certificate (and key, in one file) signed by ``ca``.
    client: Path
    #: A client certificate signed by another CA: a server requiring ``ca`` refuses it.
    stranger: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client))
        return context


def make_tls(directory: Path) -> TlsFiles:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    other = trustme.CA()
    files = TlsFiles(
        ca=directory / "ca.pem",
        server=directory / "server.pem",
        client=directory / "client.pem",
        stranger=directory / "stranger.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(files.server)
    )
    ca.issue_cert("edge-client@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(files.client)
    )
    other.issue_cert("stranger@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(files.stranger)
    )
    return files
