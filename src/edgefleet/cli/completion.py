"""Answers a shell's completion request: ``edgefleet`` run with ``_EDGEFLEET_COMPLETE`` set.

Two orders of the instruction are answered. Click's, ``SHELL_ACTION`` (``bash_complete``,
``zsh_source``, ...), is Click's own protocol and its scripts. Typer's, ``ACTION_SHELL``
(``complete_bash``, ...), is what the scripts of ``--show-completion`` and
``--install-completion`` send, and is worded with Typer's classes, as those scripts read it.

Either way Click walks the words typed so far from the root: the root's table completes
command names without importing any command, and a command written with Typer goes on
with its own Click (``TyperCommand.shell_complete``). So a request imports Typer and the
one command being completed, and this module is imported only for a request.
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import ShellComplete, get_completion_class

#: What an instruction may ask: the answer to the words typed, or the script for a shell.
_ACTIONS = ("complete", "source")


def answer(cli: click.Command, prog_name: str, complete_var: str, instruction: str) -> int:
    """Print the answer to ``instruction``; returns the exit code."""
    first, _, second = instruction.partition("_")
    typer_order = first in _ACTIONS
    action, shell = (first, second) if typer_order else (second, first)
    worded_by = _typer_class(shell) if typer_order else get_completion_class(shell)
    if worded_by is None or action not in _ACTIONS:
        click.echo(
            f"error: no such completion instruction {instruction!r} "
            "(SHELL_complete or SHELL_source, e.g. bash_complete)",
            err=True,
        )
        return 1
    request = _walked_by_click(worded_by)(cli, {}, prog_name, complete_var)
    click.echo(request.source() if action == "source" else request.complete())
    return 0


def _typer_class(shell: str) -> type[Any] | None:
    """Typer's class for ``shell``: it reads the request and words the answer as the
    scripts of ``--show-completion`` expect."""
    from typer._click.shell_completion import get_completion_class as typer_class
    from typer.completion import completion_init

    completion_init()  # registers Typer's class for each shell
    return typer_class(shell)


def _walked_by_click(worded_by: type[Any]) -> type[Any]:
    """``worded_by`` with its completions found by Click's walk from the root (Typer's copy
    of Click cannot walk it). An option typed with its value (``--output=j``, as zsh and
    fish pass it) is split here, so a Typer command too sees the option before the value."""

    class WalkedByClick(worded_by):  # type: ignore[misc, valid-type]
        def get_completions(self, args: list[str], incomplete: str) -> list[Any]:
            if incomplete.startswith("-") and "=" in incomplete:
                option, _, incomplete = incomplete.partition("=")
                args = [*args, option]
            walk = ShellComplete(self.cli, self.ctx_args, self.prog_name, self.complete_var)
            return walk.get_completions(args, incomplete)

    return WalkedByClick
