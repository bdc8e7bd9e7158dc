"""The worker's local state file, keyed by hostname, so several workers can share one home.

It lets local commands (``edgefleet worker status`` and friends) see a worker without the
server, and lets a restarted worker tell its own crashed predecessor from a live duplicate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def state_path(home: Path, hostname: str) -> Path:
    return home / "workers" / f"{hostname}.json"


def control_path(home: Path, hostname: str) -> Path:
    """Where local commands leave requests (maintenance on/off) for a running worker."""
    return home / "workers" / f"{hostname}.control.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_state(home: Path, hostname: str) -> dict[str, Any] | None:
    return _read(state_path(home, hostname))


def read_control(home: Path, hostname: str) -> dict[str, Any] | None:
    return _read(control_path(home, hostname))


def write_control(home: Path, hostname: str, request: dict[str, Any]) -> None:
    _write(control_path(home, hostname), request)


def write_state(home: Path, hostname: str, state: dict[str, Any]) -> None:
    _write(state_path(home, hostname), state)


def _write(path: Path, state: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(path)


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
