"""Commands imported only when they run.

Every ``edgefleet`` call used to import every command module, and with them the server, the
database layer and the wire models: most of a CLI call's start-up. Here each top-level
command is named with the module that defines it and its one-line help, so ``--help`` and
``--version`` import none of them and a command imports only its own module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer
from typer.core import TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """``target`` is ``"module:attribute"``: a command function or a ``typer.Typer`` group."""

    target: str
    help: str


class LazyCommands(TyperGroup):
    """A command group whose subcommands come from a table of ``LazyCommand`` entries."""

    table: dict[str, LazyCommand] = {}

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.table)

    def get_command(self, ctx: typer.Context, cmd_name: str):
        entry = self.table.get(cmd_name)
        if entry is None:
            return None
        return load_command(cmd_name, entry)

    def format_commands(self, ctx: typer.Context, formatter) -> None:
        """The table's help, so that listing the commands imports none of them."""
        rows = [(name, entry.help) for name, entry in self.table.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def load_command(name: str, entry: LazyCommand):
    """Import ``entry``'s module and turn its function or group into a Click command."""
    module_name, attribute = entry.target.split(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if isinstance(found, typer.Typer):
        command = typer.main.get_group(found)
    else:
        single = typer.Typer()
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command


def lazy_group(table: dict[str, LazyCommand]) -> type[LazyCommands]:
    """A ``LazyCommands`` class bound to ``table``, for ``typer.Typer(cls=...)``."""
    return type("EdgefleetCommands", (LazyCommands,), {"table": table})
