"""What a client of the API reads from ``EDGEFLEET_*``: the server, TLS files, credentials.

The admin commands need only these few values. Reading them here, with no model library,
keeps a command such as ``edgefleet list-workers`` from loading pydantic-settings (and
with it pydantic), a large part of a CLI call's start-up. The variables and their meaning
are those of ``edgefleet.settings.Settings``, which reads the same names (matched without
regard to case, as there) for the server and the worker; the token secret's rules live
here once, for both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgefleet.errors import ConfigurationError

DEFAULT_API_URL = "http://127.0.0.1:8080"
#: Shortest token secret accepted, from the environment or a file: HS256 wants 256 bits.
MIN_SECRET_LENGTH = 32
PREFIX = "EDGEFLEET_"
#: The fields read as text; the others name files.
_TEXT = ("api_url", "secret", "token")


def default_home() -> Path:
    return Path.home() / ".edgefleet"


def existing_secret(secret: str | None, home: Path) -> str | None:
    """The token secret from ``EDGEFLEET_SECRET`` (``secret``) or the home's secret file,
    or None when there is neither; never generates one. A secret file is checked like the
    variable: fewer than 32 characters is an error, never a silently weak key."""
    if secret:
        return secret
    secret_file = home / "secret"
    try:
        value = secret_file.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the secret file {secret_file}: {exc}") from exc
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"the secret file {secret_file} holds {len(value)} characters; a secret "
            f"needs at least {MIN_SECRET_LENGTH}. Write a longer one there (or set "
            "EDGEFLEET_SECRET), or delete the file to have one generated"
        )
    return value


class BadSetting(ValueError):
    """A variable's value cannot be used; the message names the variable."""


@dataclass(frozen=True)
class ClientSettings:
    """The settings an API client uses; ``from_env`` reads them."""

    home: Path
    api_url: str = DEFAULT_API_URL
    secret: str | None = None
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """Raises ``BadSetting`` for a secret shorter than 32 characters."""
        found = {
            name.upper()[len(PREFIX) :].lower(): value
            for name, value in (os.environ if environ is None else environ).items()
            if name.upper().startswith(PREFIX)
        }
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in found:
                continue
            text = found[field.name]
            values[field.name] = text if field.name in _TEXT else Path(text)
        secret = values.get("secret")
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise BadSetting(
                f"EDGEFLEET_SECRET: String should have at least {MIN_SECRET_LENGTH} characters"
            )
        values.setdefault("home", default_home())
        return cls(**values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ClientSettings:
        return replace(self, **overrides) if overrides else self

    def existing_secret(self) -> str | None:
        return existing_secret(self.secret, self.home)
