"""Which ``verify=`` a client gets: the CA bundle is loaded only when TLS can be used."""

from __future__ import annotations

import ssl

import pytest

from edgefleet.tls import ClientConfigError, ClientTls

pytestmark = pytest.mark.same_on_every_backend  # no database


def test_plain_http_servers_and_no_tls_files_load_no_ca_bundle() -> None:
    assert ClientTls().verify_for(["http://a:8080", "http://b:8080"]) is False


def test_an_https_server_among_them_is_verified() -> None:
    verify = ClientTls().verify_for(["http://a:8080", "HTTPS://b"])
    assert isinstance(verify, ssl.SSLContext)
    assert verify.verify_mode == ssl.CERT_REQUIRED


def test_given_tls_files_are_checked_even_for_plain_http(tmp_path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ClientConfigError, match="cannot use the CA file"):
        ClientTls(ca_file=bad).verify_for(["http://a:8080"])
