"""The CLI imports only what the command it runs needs (start-up cost: bench/cli_startup.py)."""

from __future__ import annotations

import pytest

from edgefleet.cli.lazy import load_command
from edgefleet.cli.main import COMMANDS
from support import modules_loaded_by

#: What a call must not load unless its command needs it: the wire models, the server and the
#: database layer, the HTTP client, settings and Rich.
HEAVY = (
    "edgefleet.contract",
    "edgefleet.server",
    "edgefleet.db",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "pydantic_settings",
    "jwt",
    "rich",
)

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def loaded_by(*args: str, **env: str) -> set[str]:
    base = {"PATH": "/usr/bin:/bin", "EDGEFLEET_API_URL": "http://127.0.0.1:1"}
    return modules_loaded_by(args, base | env)[0]


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


@pytest.mark.parametrize("args", [("--version",), ("--help",), ()])
def test_version_and_help_load_no_command_module(args: tuple[str, ...]) -> None:
    loaded = loaded_by(*args)
    assert not heavy(loaded)
    assert not {
        m
        for m in loaded
        if m.startswith("edgefleet.cli.")
        and m
        not in {
            "edgefleet.cli.main",
            "edgefleet.cli.lazy",
            "edgefleet.cli.context",
        }
    }
    assert not {m for m in loaded if m.split(".")[0] == "typer"}


def test_a_client_command_loads_neither_server_nor_database() -> None:
    loaded = loaded_by("list-workers", "-o", "json")
    assert "edgefleet.cli.list_workers" in loaded  # it did run
    assert not {
        m
        for m in loaded
        if m.startswith(("edgefleet.server", "edgefleet.db", "sqlalchemy", "fastapi", "uvicorn"))
    }
    assert "edgefleet.cli.db" not in loaded and "edgefleet.cli.server" not in loaded


def test_an_admin_command_signing_with_the_secret_loads_no_settings_model(
    tmp_path,
) -> None:
    """Its settings are read without pydantic-settings and the wire models, and httpx's own
    command-line tool (rich, pygments) stays unloaded. PyJWT signs its token; the command
    is plain Click, so Typer stays unloaded too."""
    loaded = loaded_by(
        "list-workers", "-o", "json", EDGEFLEET_SECRET="s" * 32, EDGEFLEET_HOME=str(tmp_path)
    )
    assert "edgefleet.auth" in loaded  # it did sign
    unwanted = ("pydantic_settings", "edgefleet.settings", "edgefleet.contract")
    unwanted += ("typer", "rich", "pygments")
    assert not {m for m in loaded if m.split(".")[0] in unwanted or m in unwanted}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_command_loads_and_its_listed_help_is_its_own(name: str) -> None:
    command = load_command(name, COMMANDS[name])
    assert command.name == name
    own = " ".join((command.help or "").split())
    listed = COMMANDS[name].help.rstrip(".")
    assert own.startswith(listed), f"{name}: the table says {listed!r}, the command {own!r}"


def test_an_unknown_command_is_refused_with_the_list() -> None:
    from click.testing import CliRunner

    from edgefleet.cli.main import app

    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'." in result.output
