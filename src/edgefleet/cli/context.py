"""What every command shares, Typer or Click: the root's options, settings read from them,
the API client, and error-to-exit conversion. It imports neither Typer nor Click, so the
root and the commands written in plain Click start without them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from click import Context

    from edgefleet.cli.api import AdminClient
    from edgefleet.client_settings import ClientSettings
    from edgefleet.settings import Settings


@dataclass
class CliOptions:
    """The global options given on the command line, kept until a command needs settings:
    reading the environment into ``Settings`` is left to the commands that use it, so
    ``--help`` and ``--version`` stay fast."""

    overrides: dict[str, Any]
    #: ``--log-level`` when it was given (commands that start other ``edgefleet`` processes
    #: pass it on), else None.
    log_level: str | None = None
    settings: Settings | None = field(default=None)
    client: ClientSettings | None = field(default=None)


def settings_of(ctx: Context) -> Settings:
    """The ``EDGEFLEET_*`` environment with the global options on top, read once; a bad
    value ends the command with exit code 2, naming the variable."""
    options: CliOptions = ctx.find_root().obj
    if options.settings is None:
        options.settings = load_settings(options.overrides)
    return options.settings


def load_settings(overrides: dict[str, Any]) -> Settings:
    from pydantic import ValidationError

    from edgefleet.settings import Settings

    token_file = overrides.get("token_file")
    try:
        settings = Settings(**({"token_file": token_file} if token_file is not None else {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"EDGEFLEET_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"bad configuration: {problems}", code=2)
    rest = {name: value for name, value in overrides.items() if name != "token_file"}
    return settings.model_copy(update=rest) if rest else settings


def client_settings_of(ctx: Context) -> ClientSettings:
    """What an API client needs of the environment and the global options, read once
    without pydantic (``edgefleet.client_settings``); a bad value ends the command with
    exit code 2, as in ``settings_of``."""
    from edgefleet.client_settings import BadSetting, ClientSettings

    options: CliOptions = ctx.find_root().obj
    if options.client is None:
        try:
            options.client = ClientSettings.from_env().with_overrides(options.overrides)
        except BadSetting as exc:
            fail(f"bad configuration: {exc}", code=2)
    return options.client


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


T = TypeVar("T")
R = TypeVar("R")


def parsed(parse: Callable[[T], R], text: T, option: str | None = None) -> R:
    """``text`` read by one of ``edgefleet.parsing``'s parsers; bad text is a usage error
    (exit 2) with the parser's message, after the option's name when given."""
    try:
        return parse(text)
    except ValueError as exc:
        fail(f"{option}: {exc}" if option else str(exc), code=2)


def selector_or(selector: str | None, flag: bool, name: str, what: str) -> dict[str, Any]:
    """Which workers a standing rule is for: ``{"selector": {...}}`` from ``--selector``,
    or ``{name: True}`` from the ``--<name>`` flag; exactly one of the two (else exit 2)."""
    from edgefleet import parsing

    if flag == (selector is not None):
        fail(f"name {what} with exactly one of --selector KEY=VALUE or --{name}", code=2)
    if flag:
        return {name: True}
    return {"selector": parsed(parsing.parse_selector, selector, "--selector")}


def query(**values: Any) -> dict[str, Any]:
    """A request's parameters: the ones given (None leaves one out), in the order given."""
    return {name: value for name, value in values.items() if value is not None}


def resource(collection: str, name: str, *rest: str) -> str:
    """The API path of one named thing: the name is sent quoted whole, so a name holding
    ``/``, ``?`` or ``#`` names nothing else (e.g. ``schedule remove 'all?x=1'`` is not the
    schedule ``all``); an empty name is refused (exit 2)."""
    from urllib.parse import quote

    if not name:
        fail(f"the {collection.removesuffix('s')} name is empty", code=2)
    return "/".join(["", collection, quote(name, safe=""), *rest])


def call(ctx: Context, method: str, path: str, **kwargs: Any) -> Any:
    """One request on a client of its own (``admin_client``), for a command that makes one."""
    with admin_client(ctx) as client:
        return client.request(method, path, **kwargs)


@contextmanager
def admin_client(ctx: Context) -> Iterator[AdminClient]:
    """An API client whose errors end the command with a message and exit code 1."""
    from edgefleet.cli.api import AdminClient, ApiError

    try:
        client = AdminClient(client_settings_of(ctx))
    except ApiError as exc:  # no credentials, an unreadable token or TLS file, a bad URL
        fail(str(exc))
    try:
        yield client
    except ApiError as exc:
        fail(str(exc))
    finally:
        client.close()
