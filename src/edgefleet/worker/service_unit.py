"""A systemd unit that keeps an edge worker running on a remote site.

Only text is made here; ``cli/worker_service.py`` decides what goes in and writes the files.
Three choices matter for a clean stop:

- ``KillMode=mixed``: ``systemctl stop`` sends SIGTERM to the worker alone. Each job runs in
  a process group of its own but in the service's cgroup, so the default (SIGTERM to every
  process in the cgroup) would stop the jobs at once instead of letting the worker drain them.
- ``TimeoutStopSec``: the worker's grace period, the kill grace of jobs still running then,
  the time for reporting, and a margin; only after it does systemd SIGKILL what is left.
- Secrets (a join token, a shared secret from the environment) go in an ``EnvironmentFile``
  of mode 0600, never in the unit, which anyone on the machine may read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.worker.runner import DRAIN_TIMEOUT, KILL_GRACE

#: Seconds added to the worker's own worst-case stop time before systemd kills it: the last
#: heartbeat and the spool's close.
STOP_MARGIN = 30.0
#: Seconds systemd waits before starting a worker that failed again.
RESTART_SEC = 5
#: The worker's exit code for bad options or configuration: a restart would fail the same way.
USAGE_EXIT = 2

_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_ENV_VALUE = re.compile(r"^[A-Za-z0-9_.~+/=:-]+$")
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_@+=:,./-]*$")
MASK = "********"


def unit_name(hostname: str) -> str:
    return f"edgefleet-worker-{hostname}.service"


def stop_timeout(grace_period: float, report_timeout: float) -> int:
    """Whole seconds systemd waits for the worker to stop after SIGTERM."""
    return math.ceil(grace_period + KILL_GRACE + DRAIN_TIMEOUT + report_timeout + STOP_MARGIN)


def quote(arg: str) -> str:
    """One command-line word as systemd reads it: specifiers (``%``) and variables (``$``)
    doubled, and quoted when it holds anything but plain characters."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG.match(arg):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def check_env_value(name: str, value: str) -> None:
    """An environment file holds ``NAME=value`` lines: refuse what would not read back as is
    (tokens and secrets are URL-safe text)."""
    if not _ENV_VALUE.match(value):
        raise ValueError(f"{name} holds characters an environment file cannot carry as is")


def check_home(path: Path) -> None:
    """The home is named bare in ``Environment=``, ``EnvironmentFile=`` and
    ``WorkingDirectory=``: an absolute path of plain characters (no blanks, quotes, ``%``)."""
    if not _PLAIN_PATH.match(str(path)):
        raise ValueError(
            f"EDGEFLEET_HOME {str(path)!r} must be an absolute path of letters, digits and "
            "'_@+=:,./-' to be named in a systemd unit"
        )


@dataclass(frozen=True)
class ServiceUnit:
    """Everything the unit says; ``command`` starts with the absolute executable."""

    hostname: str
    command: Sequence[str]
    home: Path
    stop_timeout: int
    user_manager: bool = False
    env_file: Path | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        online = [] if self.user_manager else ["network-online.target"]
        lines = [
            f"# Written by `edgefleet worker install-service -H {self.hostname}`; run that",
            "# command again to change it.",
            "[Unit]",
            f"Description=edgefleet worker {self.hostname}",
            *(f"After={target}" for target in online),
            *(f"Wants={target}" for target in online),
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=" + " ".join(quote(arg) for arg in self.command),
            f"Environment=EDGEFLEET_HOME={self.home}",
        ]
        if self.env_file is not None:
            lines.append(f"EnvironmentFile={self.env_file}")
        lines += [
            f"WorkingDirectory={self.home}",
            "Restart=on-failure",
            f"RestartSec={RESTART_SEC}",
            f"RestartPreventExitStatus={USAGE_EXIT}",
            "KillMode=mixed",
            "KillSignal=SIGTERM",
            f"TimeoutStopSec={self.stop_timeout}",
            "",
            "[Install]",
            f"WantedBy={'default.target' if self.user_manager else 'multi-user.target'}",
        ]
        return "\n".join(lines) + "\n"

    def render_env(self, *, masked: bool) -> str:
        """The environment file's text; ``masked`` shows every value as ``********``."""
        return "".join(
            f"{name}={MASK if masked else value}\n" for name, value in self.secrets.items()
        )
