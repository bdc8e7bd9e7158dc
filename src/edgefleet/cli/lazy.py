"""Commands imported only when they run, under a root that starts without Typer.

Every ``edgefleet`` call used to import every command module, and with them the server, the
database layer and the wire models: most of a CLI call's start-up. Here each top-level
command is named with the module that defines it and its one-line help, so ``--help`` and
``--version`` import none of them and a command imports only its own module.

The root group is plain Click: Typer and its copy of Click cost every call about 60 ms of
imports. A command written with Typer is loaded through Typer only when it runs, and runs as
a program of its own under the root's name (``TyperCommand``); one written in Click (the
most-run read-only ones) runs under the root directly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


@dataclass(frozen=True)
class LazyCommand:
    """``target`` is ``"module:attribute"``: a ``click.Command``, a command function for
    Typer or a ``typer.Typer`` group."""

    target: str
    help: str


def _parse_args(parse: Any, ctx: click.Context, args: list[str]) -> list[str]:
    """``parse(ctx, args)`` with an unknown option worded as the Typer commands word it
    (``No such option: --x``), so every command says it the same way."""
    try:
        return parse(ctx, args)
    except click.NoSuchOption as exc:
        message = f"No such option: {exc.option_name}"
        if exc.possibilities:
            message += f" (Possible options: {', '.join(sorted(exc.possibilities))})"
        raise click.UsageError(message, ctx) from None


class ClickCommand(click.Command):
    """A command written in plain Click (``@click.command(cls=ClickCommand)``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _parse_args(super().parse_args, ctx, args)


class LazyCommands(click.Group):
    """A command group whose subcommands come from a table of ``LazyCommand`` entries."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _parse_args(super().parse_args, ctx, args)

    def __init__(self, table: dict[str, LazyCommand], **attrs: Any) -> None:
        super().__init__(**attrs)
        self.table = table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.table)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.table.get(cmd_name)
        if entry is None:
            return None
        return load_command(cmd_name, entry)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The table's help, so that listing the commands imports none of them."""
        rows = [(name, entry.help) for name, entry in self.table.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """The table's names and help, so that completing a command's name imports none."""
        from click.shell_completion import CompletionItem

        names = [
            CompletionItem(name, help=entry.help)
            for name, entry in self.table.items()
            if name.startswith(incomplete)
        ]
        return names + click.Command.shell_complete(self, ctx, incomplete)


class TyperCommand(click.Command):
    """A command built by Typer, run under the plain-Click root.

    Typer builds its commands on its own copy of Click, whose contexts and errors the root's
    Click does not know; so the command parses its own arguments (``--help`` included) as a
    program named ``edgefleet NAME`` that shares the root's options (``ctx.obj``), and its
    errors are shown and exit as the root shows its own."""

    def __init__(self, name: str, command: Any) -> None:
        super().__init__(
            name,
            help=command.help,
            add_help_option=False,
        )
        self.command = command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Every argument, ``--`` included, is the Typer command's to parse."""
        ctx.args = list(args)
        return []

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """What the command's own Click (Typer's copy) completes after the words typed since
        its name: its options and their choices, and the subcommands of a group.

        The root walks to this command with its Click, which knows nothing of Typer's; here
        the walk goes on with ``ctx.args``, all of them, since ``parse_args`` keeps them."""
        from typer._completion_classes import BashComplete  # every shell's walks alike

        walk = BashComplete(self.command, {}, ctx.command_path, "")
        return walk.get_completions(list(ctx.args), incomplete)

    def invoke(self, ctx: click.Context) -> Any:
        from typer import Abort
        from typer._click.exceptions import ClickException

        try:
            code = self.command.main(
                ctx.args, prog_name=ctx.command_path, obj=ctx.obj, standalone_mode=False
            )
        except ClickException as exc:
            exc.show()
            ctx.exit(exc.exit_code)
        except Abort:
            click.echo("Aborted!", err=True)
            ctx.exit(1)
        if isinstance(code, int) and code:
            ctx.exit(code)


def load_command(name: str, entry: LazyCommand) -> click.Command:
    """Import ``entry``'s module; a Click command is used as it is, a Typer function or
    group is built by Typer and wrapped in a ``TyperCommand``."""
    module_name, attribute = entry.target.split(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if isinstance(found, click.Command):
        command: click.Command = found
    else:
        command = TyperCommand(name, _typer_command(name, found))
    command.name = name
    return command


def _typer_command(name: str, found: Any) -> Any:
    import typer

    if isinstance(found, typer.Typer):
        return typer.main.get_group(found)
    single = typer.Typer(add_completion=False)  # the root's completion serves it
    single.command(name)(found)
    return typer.main.get_command(single)
