"""Shell completion reaches into every command: a shell runs ``edgefleet`` with
``_EDGEFLEET_COMPLETE`` set and the words typed so far, and offers what it prints."""

from __future__ import annotations

import subprocess

import pytest

from edgefleet.cli.main import COMMANDS
from support import EDGEFLEET, Cli, modules_loaded_by
from support.cli import describe

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

#: Click's order of the instruction (``edgefleet`` answers as any Click program does), and
#: Typer's, which the scripts of ``--show-completion`` and ``--install-completion`` send.
CLICK_BASH, TYPER_BASH = "bash_complete", "complete_bash"
BASE_ENV = {"PATH": "/usr/bin:/bin", "EDGEFLEET_API_URL": "http://127.0.0.1:1"}


def bash_env(line: str, instruction: str) -> dict[str, str]:
    """What bash sets when TAB is pressed at the end of ``line``: its words, and the index of
    the one being completed (a new, empty one after a trailing space)."""
    words = line.split()
    current = len(words) if line.endswith(" ") else len(words) - 1
    return BASE_ENV | {
        "COMP_WORDS": line,
        "COMP_CWORD": str(current),
        "_EDGEFLEET_COMPLETE": instruction,
    }


def offered(line: str, instruction: str = CLICK_BASH) -> list[str]:
    """The candidates bash gets for the last word of ``line``."""
    result = Cli(bash_env(line, instruction))()
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    if instruction == CLICK_BASH:  # Click's script reads ``type,value`` lines
        return [row.partition(",")[2] for row in lines]
    return lines


@pytest.mark.parametrize("instruction", [CLICK_BASH, TYPER_BASH])
def test_command_names_and_the_root_options(instruction: str) -> None:
    assert offered("edgefleet set-w", instruction) == ["set-worker-concurrency"]
    assert offered("edgefleet --tok", instruction) == ["--token-file"]


@pytest.mark.parametrize("instruction", [CLICK_BASH, TYPER_BASH])
def test_the_options_of_a_typer_command(instruction: str) -> None:
    options = offered("edgefleet --log-level DEBUG set-worker-concurrency --", instruction)
    assert {"--edge-hostname", "--concurrency", "--selector", "--all", "--wait"} <= set(options)
    assert "--log-level" not in options  # the command's own, not the root's


@pytest.mark.parametrize("instruction", [CLICK_BASH, TYPER_BASH])
def test_the_subcommands_and_options_of_a_typer_group(instruction: str) -> None:
    assert {"list", "show"} <= set(offered("edgefleet jobs ", instruction))
    assert {"--state", "--queue", "--limit"} <= set(offered("edgefleet jobs list --", instruction))
    assert offered("edgefleet jobs list --output ", instruction) == ["table", "json"]
    assert offered("edgefleet jobs list --state ", instruction) == [
        "queued",
        "running",
        "success",
        "failed",
        "cancelled",
    ]


def test_zsh_an_option_typed_with_its_value() -> None:
    """zsh sends the line as typed (Typer's order, ``--show-completion`` in zsh)."""
    env = BASE_ENV | {
        "_TYPER_COMPLETE_ARGS": "edgefleet jobs list --output=j",
        "_EDGEFLEET_COMPLETE": "complete_zsh",
    }
    result = Cli(env)()
    assert result.stdout.strip() == """_arguments '*: :(("json"))'""", describe(result)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_completes_its_own_options(name: str) -> None:
    """The walk a completion request takes, in this process, for each command of the table;
    the options of the root, completion's included, are the root's alone."""
    from click.shell_completion import ShellComplete

    from edgefleet.cli.main import app

    walk = ShellComplete(app, {}, "edgefleet", "_EDGEFLEET_COMPLETE")
    options = {item.value for item in walk.get_completions([name], "--")}
    assert "--help" in options, options
    assert not {"--token-file", "--install-completion", "--show-completion"} & options, options


def test_the_options_and_choices_of_a_click_command() -> None:
    assert {"--edge-hostname", "--output"} <= set(offered("edgefleet list-workers --"))
    assert offered("edgefleet list-workers -o ") == ["table", "json"]
    assert offered("edgefleet list-workers --state off") == ["offline"]


def test_an_unknown_instruction_is_refused_in_one_line() -> None:
    result = Cli(bash_env("edgefleet ", "tcsh_complete"))()
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.strip() == (
        "error: no such completion instruction 'tcsh_complete' "
        "(SHELL_complete or SHELL_source, e.g. bash_complete)"
    )


@pytest.mark.parametrize(
    "printed_by",
    [f"{EDGEFLEET} --show-completion", f"_EDGEFLEET_COMPLETE=bash_source {EDGEFLEET}"],
    ids=["typer", "click"],
)
def test_a_bash_script_completes_inside_a_command(printed_by: str) -> None:
    """The script ``--show-completion`` prints, or Click's, sourced in bash as a user's
    shell does, then asked what a TAB after ``concurrency-rule set --`` offers."""
    script = f"""
        eval "$({printed_by})"
        COMP_WORDS=(edgefleet concurrency-rule set --)
        COMP_CWORD=3
        _edgefleet_completion {EDGEFLEET}
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    result = subprocess.run(
        ["bash", "--norc", "-c", script], env=BASE_ENV, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--selector" in result.stdout.split(), result.stdout + result.stderr


def test_completing_a_command_name_imports_no_command() -> None:
    loaded, _ = modules_loaded_by((), bash_env("edgefleet s", TYPER_BASH))
    assert "edgefleet.cli.main" in loaded  # it did run
    assert not {entry.target.split(":")[0] for entry in COMMANDS.values()} & loaded
