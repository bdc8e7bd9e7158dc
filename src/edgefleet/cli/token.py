"""``edgefleet ui-token``: an admin token to paste into the web UI's sign-in form."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from edgefleet.auth import MAX_TOKEN_LIFETIME_SECONDS, Identity, mint_token
from edgefleet.cli.api import operator_name
from edgefleet.cli.common import fail, settings_of

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h`` or ``1d``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"bad duration {text!r}: use e.g. 30m, 12h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def ui_token(
    ctx: typer.Context,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime, e.g. 30m, 12h, 1d (at most 24h).")
    ] = "12h",
    name: Annotated[
        str | None,
        typer.Option("--name", help="Who the audit log names; defaults to user@host."),
    ] = None,
) -> None:
    """Print an admin token for the web UI (GET /ui) on stdout; anyone holding it is admin."""
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        fail(str(exc), code=2)
    if not 60 <= seconds <= MAX_TOKEN_LIFETIME_SECONDS:
        fail(f"--ttl must be between 1m and 24h (the server refuses longer tokens): {ttl}", 2)
    subject = operator_name() if name is None else name.strip()
    if not _NAME.match(subject):
        fail("--name must be 1-255 printable characters", code=2)
    settings = settings_of(ctx)
    token = mint_token(settings.signing_secret(), Identity(subject=subject, role="admin"), seconds)
    expires = datetime.now(UTC) + timedelta(seconds=int(seconds))
    print(token)
    print(
        f"admin token for {subject!r}, valid until {expires:%Y-%m-%d %H:%M:%S} UTC; "
        f"paste it into {settings.api_url.rstrip('/')}/ui",
        file=sys.stderr,
    )
