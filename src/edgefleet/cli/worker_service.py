"""``edgefleet worker install-service``: a systemd unit for the worker on this machine.

The worker's own options are read by the ``edgefleet worker`` command's own parameters (the
same names, types and bounds), then checked as a start would check them, so a unit is never
written for a worker that would refuse to start. Values that came from the environment here
(API URLs, TLS files, EDGEFLEET_HOME) are written into the unit, as the service will not see
this shell's environment. The unit text itself is made by ``worker.service_unit``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from edgefleet import parsing
from edgefleet.cli.context import fail, parsed, settings_of

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_MODE = 0o644
#: Options written into the unit from resolved values, not passed through as given.
_RESOLVED = ("edge_hostname", "join_token", "api_url", "ca_file", "client_cert", "client_key")


@dataclass(frozen=True)
class Target:
    """Where the files go and which systemd manager runs the unit."""

    unit_dir: Path
    user_manager: bool

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl", "--user"] if self.user_manager else ["systemctl"]


def install(
    ctx: typer.Context, *, dry_run: bool, unit_dir: Path | None, user: bool, enable: bool
) -> None:
    from edgefleet.worker.service_unit import unit_name

    target = _target(unit_dir, user)
    unit = _build_unit(ctx, target.user_manager)
    unit_path = target.unit_dir / unit_name(unit.hostname)
    commands = [
        [*target.systemctl, "daemon-reload"],
        [*target.systemctl, "enable", "--now", unit_name(unit.hostname)],
    ]
    if dry_run:
        print(f"# {unit_path}")
        print(unit.render(), end="")
        if unit.env_file is not None:
            print(f"\n# {unit.env_file} (mode 0600; values hidden)")
            print(unit.render_env(masked=True), end="")
        print("\n# then: " + " && ".join(" ".join(command) for command in commands))
        return
    if enable and shutil.which("systemctl") is None:
        fail("--enable: no systemctl on this machine; write the unit without --enable")
    _check_writable(target)
    _write(unit, unit_path, target)
    print(f"wrote {unit_path}")
    if unit.env_file is not None:
        print(f"wrote {unit.env_file} (mode 0600)")
    if enable:
        for command in commands:
            _systemctl(command)
        print(f"started {unit_name(unit.hostname)}")
    else:
        print("next: " + " && ".join(" ".join(command) for command in commands))


def _target(unit_dir: Path | None, user: bool) -> Target:
    if unit_dir is not None:
        return Target(unit_dir.absolute(), user)
    if user:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Target(Path(config).absolute() / "systemd" / "user", True)
    return Target(SYSTEM_UNIT_DIR, False)


def _build_unit(ctx: typer.Context, user_manager: bool):
    """The unit for the worker options given, or a one-line error (exit 2)."""
    from edgefleet.cli.worker import choose_identity
    from edgefleet.contract import HOSTNAME_PATTERN
    from edgefleet.worker.credential import credential_path
    from edgefleet.worker.service_unit import (
        ServiceUnit,
        check_env_value,
        check_home,
        stop_timeout,
        unit_name,
    )

    settings = settings_of(ctx)
    values, passed = _worker_options(ctx)
    hostname = values["edge_hostname"]
    if not hostname:
        fail("give the worker's name: install-service -H NAME", code=2)
    if not re.match(HOSTNAME_PATTERN, hostname) or len(unit_name(hostname)) > 255:
        fail(f"bad worker name {hostname!r}: use letters, digits, '_', '.' or '-'", code=2)
    parsed(parsing.parse_queues, values["queues"], "--queues")
    parsed(parsing.parse_labels, values["label"] or [], "--label")
    home = settings.home.absolute()
    try:
        check_home(home)
    except ValueError as exc:
        fail(str(exc), code=2)
    secrets = _secrets(settings, choose_identity(settings, hostname, values["join_token"]))
    for name, value in secrets.items():
        try:
            check_env_value(name, value)
        except ValueError as exc:
            fail(str(exc), code=2)
    command = [
        *_executable(ctx),
        "worker",
        "--edge-hostname",
        hostname,
        *_connection_args(settings, values),
        *passed,
    ]
    return ServiceUnit(
        hostname=hostname,
        command=command,
        home=home,
        stop_timeout=stop_timeout(values["grace_period"], values["report_timeout"]),
        user_manager=user_manager,
        env_file=credential_path(home, hostname).with_name("service.env") if secrets else None,
        secrets=secrets,
    )


def _worker_options(ctx: typer.Context) -> tuple[dict[str, Any], list[str]]:
    """The ``edgefleet worker`` options given (after ``install-service``, or before it), read
    by that command's own parameters: their values, and the arguments that pass through to
    the unit as given (in a normal form)."""
    group = ctx.parent.command
    reader = TyperCommand(
        f"{ctx.parent.info_name} {ctx.info_name}", params=group.params, add_help_option=False
    )
    try:
        own = reader.make_context(reader.name, list(ctx.args))
    except typer.TyperException as exc:  # a usage error: unknown option, value out of range
        fail(" ".join(exc.format_message().split()), code=2)
    values = dict(own.params)
    given = set()
    for param in group.params:
        name = param.name
        if _given(own, name):
            given.add(name)
        elif _given(ctx.parent, name):
            values[name] = ctx.parent.params[name]
            given.add(name)
    passed: list[str] = []
    for param in group.params:
        if param.name in given and param.name not in _RESOLVED:
            passed += _as_args(param, values[param.name])
    return values, passed


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was on the command line (not a default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _as_args(param, value: Any) -> list[str]:
    long = next(opt for opt in param.opts if opt.startswith("--"))
    if getattr(param, "is_flag", False):
        return [long if value else param.secondary_opts[0]]
    items = value if param.multiple else [value]
    return [arg for item in items for arg in (long, str(item))]


def _connection_args(settings, values: dict[str, Any]) -> list[str]:
    """``--api-url`` and the TLS files, from the options or this environment, checked, with
    absolute paths (the service runs in another folder)."""
    from edgefleet.api_urls import parse_api_urls
    from edgefleet.tls import ClientConfigError, ClientTls

    tls = ClientTls.from_settings(
        settings,
        ca_file=values["ca_file"],
        client_cert=values["client_cert"],
        client_key=values["client_key"],
    )
    try:
        urls = parse_api_urls(values["api_url"] or settings.api_url)
        tls.ssl_context()
    except ClientConfigError as exc:
        fail(str(exc), code=2)
    args = ["--api-url", ",".join(urls)]
    for option, path in (
        ("--ca-file", tls.ca_file),
        ("--client-cert", tls.client_cert),
        ("--client-key", tls.client_key),
    ):
        if path is not None:
            args += [option, str(Path(path).absolute())]
    return args


def _secrets(settings, identity: tuple[str, str | None]) -> dict[str, str]:
    """What the environment file must carry: a join token, or a shared secret that only
    this shell's environment holds (one in EDGEFLEET_HOME is read there by the worker)."""
    kind, value = identity
    if kind == "credential":
        return {"EDGEFLEET_JOIN_TOKEN": value} if value else {}
    return {"EDGEFLEET_SECRET": value} if settings.secret and value else {}


def _executable(ctx: typer.Context) -> list[str]:
    """The absolute ``edgefleet`` of this Python's environment, with the global log level
    when one was given."""
    beside = Path(sys.executable).absolute().parent / "edgefleet"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("edgefleet")
    if found is None:
        fail(f"no edgefleet executable beside {sys.executable} or on PATH")
    log_level = ctx.find_root().obj.log_level
    if log_level is not None:
        return [str(Path(found).absolute()), "--log-level", log_level]
    return [str(Path(found).absolute())]


def _check_writable(target: Target) -> None:
    folder = target.unit_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # --user creates its folder: its nearest existing parent counts
    if not folder.is_dir() or (folder != target.unit_dir and not target.user_manager):
        fail(f"no folder {target.unit_dir}")
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"cannot write to {folder}: run as root, or install for your own user with --user")


def _write(unit, unit_path: Path, target: Target) -> None:
    """The environment file (0600, in the worker's private folder), then the unit (0644),
    each replaced in one step."""
    from edgefleet.private_files import ensure_private_dir, replace_file, replace_private

    try:
        ensure_private_dir(unit.home)
        if unit.env_file is not None:
            ensure_private_dir(unit.env_file.parent.parent)
            ensure_private_dir(unit.env_file.parent)
            replace_private(unit.env_file, unit.render_env(masked=False).encode())
        target.unit_dir.mkdir(parents=True, exist_ok=True)
        replace_file(unit_path, unit.render().encode(), UNIT_MODE)
    except OSError as exc:
        fail(f"cannot write the service files: {exc}")


def _systemctl(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        fail(f"{' '.join(command)} failed: {lines[-1] if lines else done.returncode}")
