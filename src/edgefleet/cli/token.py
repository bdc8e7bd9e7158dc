"""Tokens: ``edgefleet token ...`` manages operator tokens and join tokens on the server;
``edgefleet ui-token`` mints an admin token from the shared secret for the web UI."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from edgefleet import parsing
from edgefleet.auth import MAX_TOKEN_LIFETIME_SECONDS, Identity, mint_token
from edgefleet.cli.api import operator_name
from edgefleet.cli.common import OutputOption
from edgefleet.cli.context import call, fail, parsed, resource, settings_of
from edgefleet.cli.output import OutputFormat, print_done, print_json, print_listing
from edgefleet.contract import MAX_JOIN_TTL, MAX_TOKEN_TTL, Role

_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


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
        seconds = parsing.parse_duration(ttl)
    except ValueError as exc:
        fail(str(exc), code=2)
    if not 60 <= seconds <= MAX_TOKEN_LIFETIME_SECONDS:
        fail(f"--ttl must be between 1m and 24h (the server refuses longer tokens): {ttl}", 2)
    subject = operator_name() if name is None else name.strip()
    if not _NAME.match(subject):
        fail("--name must be 1-255 printable characters", code=2)
    settings = settings_of(ctx)
    secret = settings.existing_secret()
    if secret is None:
        fail(
            "this machine holds no shared secret (EDGEFLEET_SECRET or "
            f"{settings.home / 'secret'}): run ui-token on the server host, or sign in with "
            "an operator token from `edgefleet token create`"
        )
    token = mint_token(secret, Identity(subject=subject, role="admin"), seconds)
    expires = datetime.now(UTC) + timedelta(seconds=int(seconds))
    print(token)
    print(
        f"admin token for {subject!r}, valid until {expires:%Y-%m-%d %H:%M:%S} UTC; "
        f"paste it into {settings.api_url.split(',')[0].strip().rstrip('/')}/ui",
        file=sys.stderr,
    )


# --- edgefleet token ... -------------------------------------------------------------------

app = typer.Typer(help="Operator tokens (with roles) and join tokens for new workers.")

#: The server's bounds (contract.py), checked here so a typo fails before reaching it.
MIN_TTL_SECONDS = 60
MAX_JOIN_USES = 100000
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@:\-]{1,128}$")

TOKEN_COLUMNS = [
    ("name", "NAME"),
    ("role", "ROLE"),
    ("created_at", "CREATED"),
    ("created_by", "CREATED_BY"),
    ("expires_at", "EXPIRES"),
    ("revoked_at", "REVOKED"),
]


def ttl_seconds(text: str, longest: int) -> int:
    """A token lifetime from ``--ttl``, between a minute and ``longest`` seconds; exits 2
    otherwise."""
    try:
        seconds = parsing.parse_duration(text)
    except ValueError as exc:
        fail(f"--ttl: {exc}", code=2)
    if not MIN_TTL_SECONDS <= seconds <= longest:
        fail(f"--ttl must be between 1m and {longest // 86400}d, not {text!r}", code=2)
    return int(seconds)


def parse_join_labels(values: list[str]) -> dict[str, str]:
    return parsed(parsing.parse_labels, values, "--label")


def _until(expires_at: Any) -> str:
    return str(expires_at).replace("T", " ") if expires_at else "never"


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Unique name; the audit log's actor.")],
    role: Annotated[Role, typer.Option("--role", help="viewer, operator or admin.")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 12h, 30d, 90d.")] = "90d",
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create an operator token; it is shown once and never again (the server keeps a hash)."""
    name = name.strip()
    if not _TOKEN_NAME.match(name):
        fail("--name must be 1-128 letters, digits or '_.@:-'", code=2)
    body = {"name": name, "role": role.value, "ttl_seconds": ttl_seconds(ttl, MAX_TOKEN_TTL)}
    result = call(ctx, "POST", "/tokens", json=body)
    _show_once(
        result,
        output,
        f"{result['role']} token {result['name']!r}, valid until {_until(result.get('expires_at'))}"
        "; shown only this once: keep it in a file only you can read and use it with "
        "EDGEFLEET_TOKEN or --token-file",
    )


@app.command("list")
def list_tokens(ctx: typer.Context, output: OutputOption = OutputFormat.TABLE) -> None:
    """Operator tokens: name, role, who created them, expiry and revocation (never secrets)."""
    print_listing(call(ctx, "GET", "/tokens"), output, TOKEN_COLUMNS)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke an operator token: its next request is refused (401)."""
    call(ctx, "DELETE", resource("tokens", name))
    print_done(output, name, "revoked")


@app.command("create-join")
def create_join(
    ctx: typer.Context,
    ttl: Annotated[str, typer.Option("--ttl", help="How long it may be used, e.g. 1h.")] = "1h",
    uses: Annotated[int, typer.Option("--uses", help="How many workers may enroll with it.")] = 1,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE applied to enrolled workers; repeatable."),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a join token: start a new worker with --join-token to enroll it."""
    if not 1 <= uses <= MAX_JOIN_USES:
        fail(f"--uses must be between 1 and {MAX_JOIN_USES}, not {uses}", code=2)
    body = {
        "ttl_seconds": ttl_seconds(ttl, MAX_JOIN_TTL),
        "uses": uses,
        "labels": parse_join_labels(label or []),
    }
    result = call(ctx, "POST", "/tokens/join", json=body)
    count = result.get("uses", uses)
    _show_once(
        result,
        output,
        f"join token for {count} worker{'s' if count != 1 else ''}, valid until "
        f"{_until(result.get('expires_at'))}; on the new worker run: "
        "edgefleet worker --join-token <token>  (or set EDGEFLEET_JOIN_TOKEN)",
    )


def _show_once(result: dict[str, Any], output: OutputFormat, note: str) -> None:
    """A new token: JSON, or the token alone on stdout (for a pipe) and ``note`` on stderr."""
    if output is OutputFormat.JSON:
        print_json(result)
        return
    print(result["token"])
    print(note, file=sys.stderr)
