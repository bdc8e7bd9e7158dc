"""Running the installed ``edgefleet`` console script the way an operator does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: The console script of the environment running the tests (the venv's ``bin/edgefleet``).
EDGEFLEET = Path(sys.executable).parent / "edgefleet"

_BOX = re.compile(r"[\u2500-\u257f]")  # rich's box-drawing characters around error panels


def squash(text: str) -> str:
    """Text with rich's panel borders removed and all whitespace runs collapsed to one space.

    CLI error panels wrap long messages at the terminal width; compare messages on this.
    """
    return " ".join(_BOX.sub(" ", text).split())


class Cli:
    """Runs ``edgefleet ARGS...`` with ``env`` (read at call time, so later edits are seen)."""

    def __init__(self, env: Mapping[str, str], executable: Path = EDGEFLEET) -> None:
        self.env = env
        self.executable = executable

    def __call__(
        self,
        *args: str | int,
        check: bool = False,
        timeout: float = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the command; returns the CompletedProcess (text). ``check`` asserts exit 0."""
        argv = [str(self.executable), *map(str, args)]
        result = subprocess.run(
            argv,
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, describe(result)
        return result

    def run_all(
        self, commands: Sequence[Sequence[str | int]], max_workers: int = 4, **kwargs: Any
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands in parallel (each CLI start costs about a second of
        imports); returns their results in the order given. ``kwargs`` go to each call."""
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(lambda args: self(*args, **kwargs), commands))

    def json(self, *args: str | int, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Run with ``--output json`` (placed before a ``--``), assert exit 0, parse stdout."""
        args_list = [str(a) for a in args]
        at = args_list.index("--") if "--" in args_list else len(args_list)
        args_list[at:at] = ["--output", "json"]
        result = self(*args_list, check=True, timeout=timeout, **kwargs)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout is not JSON ({exc}):\n{describe(result)}") from None


def run_in_process(*args: str | int, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``edgefleet ARGS`` run by the console script's own entry point
    (``edgefleet.cli.main.run``) inside this process, without a process start's second of
    imports: for the many calls a test needs only refused. ``env``'s ``EDGEFLEET_*``
    variables are the call's whole edgefleet configuration (any other ``EDGEFLEET_*`` of this
    process is hidden during the call). Returns what ``Cli`` returns for the same call."""
    from click.testing import CliRunner

    from edgefleet.cli.main import run

    argv = [str(EDGEFLEET), *map(str, args)]
    hidden: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EDGEFLEET_")}
    settings = {k: v for k, v in env.items() if k.startswith("EDGEFLEET_")}
    code: int | str | None = 0
    with CliRunner().isolation(env={**hidden, **settings}) as (stdout, stderr, _):
        saved, sys.argv = sys.argv, argv
        try:
            run()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = saved
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    if isinstance(code, str):  # sys.exit("message"): printed, exit code 1, as Python does
        err, code = f"{err}{code}\n", 1
    return subprocess.CompletedProcess(argv, code or 0, out, err)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A CompletedProcess as text for assertion messages."""
    command = " ".join(str(a) for a in result.args[1:])
    return (
        f"`edgefleet {command}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def clean_cli_env(monkeypatch, home: Path, **values: str) -> Path:
    """A CLI environment with no EDGEFLEET_* of the developer's: ``EDGEFLEET_HOME`` is
    ``home`` and each ``values`` key ``X`` sets ``EDGEFLEET_X``. Returns ``home``."""
    for key in list(os.environ):
        if key.startswith("EDGEFLEET_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EDGEFLEET_HOME", str(home))
    for name, value in values.items():
        monkeypatch.setenv(f"EDGEFLEET_{name}", value)
    return home


def capture_admin_requests(monkeypatch, answer) -> list:
    """Route the CLI's API calls to ``answer(request) -> httpx.Response`` in-process and
    return the list every request is appended to."""
    import httpx

    from edgefleet.cli import api

    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer(request)

    transport = httpx.MockTransport(handler)
    client = api.AdminClient
    monkeypatch.setattr(api, "AdminClient", lambda s: client(s, transport=transport))
    return requests


#: Runs ``edgefleet ARGS`` in-process, then prints the modules it loaded, as JSON, last on
#: stderr.
_IMPORT_PROBE = """
import json, sys
from edgefleet.cli.main import run
sys.argv = ["edgefleet", *json.loads(sys.argv[1])]
try:
    run()
except SystemExit:
    pass
print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)), file=sys.stderr)
"""


def modules_loaded_by(args: Sequence[str], env: Mapping[str, str]) -> tuple[set[str], str]:
    """The modules an ``edgefleet ARGS`` call imports, and what it wrote to stderr before."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(env),
    )
    *said, modules = done.stderr.strip().splitlines()
    return set(json.loads(modules)), "\n".join(said)
