"""The admin commands' settings reader agrees with ``Settings`` on every variable it reads."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from edgefleet.client_settings import BadSetting, ClientSettings
from edgefleet.settings import Settings

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

ENV = {
    "EDGEFLEET_HOME": "/srv/fleet",
    "EDGEFLEET_API_URL": "https://a.example:8443,https://b.example:8443",
    "EDGEFLEET_SECRET": "s" * 40,
    "EDGEFLEET_TOKEN": "efo_abc",
    "edgefleet_token_file": "/run/token",  # names match without regard to case
    "EDGEFLEET_CA_FILE": "/etc/ca.pem",
    "EDGEFLEET_CLIENT_CERT": "/etc/me.pem",
    "EDGEFLEET_CLIENT_KEY": "/etc/me.key",
    "EDGEFLEET_KEEP_ALIVE": "not a number",  # not a client's concern
}


def test_every_variable_reads_as_settings_reads_it(monkeypatch):
    for name, value in ENV.items():
        if name != "EDGEFLEET_KEEP_ALIVE":
            monkeypatch.setenv(name, value)
    full = Settings()
    client = ClientSettings.from_env(ENV)
    for field in fields(ClientSettings):
        assert getattr(client, field.name) == getattr(full, field.name), field.name


def test_unset_variables_take_the_same_defaults(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.upper().startswith("EDGEFLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    full = Settings()
    client = ClientSettings.from_env()
    for field in fields(ClientSettings):
        assert getattr(client, field.name) == getattr(full, field.name), field.name


def test_a_short_secret_is_refused_naming_the_variable():
    with pytest.raises(BadSetting, match="EDGEFLEET_SECRET: .* at least 32"):
        ClientSettings.from_env({"EDGEFLEET_SECRET": "short"})


def test_options_override_the_environment():
    settings = ClientSettings.from_env({"EDGEFLEET_API_URL": "http://a"})
    assert settings.with_overrides({"api_url": "http://b"}).api_url == "http://b"
    assert settings.with_overrides({"ca_file": Path("/ca")}).ca_file == Path("/ca")
