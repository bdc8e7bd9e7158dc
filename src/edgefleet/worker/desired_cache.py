"""The last desired state a worker applied, kept on its disk for a start without the server.

A worker restarted while the centre is unreachable runs on what the centre last told it
(concurrency, queues, maintenance) rather than falling back to its start-up flags; once it
registers, the server's answer replaces the cache. The file
(``$EDGEFLEET_HOME/workers/<hostname>/desired.json``, mode 0600) is replaced atomically, so a
crash leaves the old state or the new one. One that cannot be read is ignored with a warning:
the flags apply, as they did before any cache.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import ValidationError

from edgefleet.contract import Concurrency, Count, DesiredState, Queues
from edgefleet.private_files import ensure_private_dir, replace_private
from edgefleet.worker.credential import credential_path

log = logging.getLogger(__name__)

FILE_NAME = "desired.json"


class _Cached(DesiredState):
    """What a cache file must hold to be used: the contract's bounds, checked again, since
    anything may have written to the disk."""

    version: Count
    concurrency: Concurrency
    concurrency_after: Concurrency | None = None
    queues: Queues


def desired_path(home: Path, hostname: str) -> Path:
    """Beside the worker's credential, in its own state directory."""
    return credential_path(home, hostname).with_name(FILE_NAME)


class DesiredCache:
    """Reads and writes one worker's cached desired state; never raises for a bad file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DesiredState | None:
        """The cached state, or None when there is none or it cannot be used. A shutdown
        order is not kept: it was meant for the process that received it."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the cached desired state %s (%s); ignoring it", self.path, exc)
            return None
        try:
            cached = _Cached.model_validate_json(text)
        except ValidationError as exc:
            problem = exc.errors()[0].get("msg", "invalid") if exc.errors() else "invalid"
            log.warning(
                "the cached desired state %s is damaged (%s); ignoring it", self.path, problem
            )
            return None
        return DesiredState(**{**cached.model_dump(), "shutdown": False})

    def save(self, desired: DesiredState) -> bool:
        """Replace the cache with ``desired``; False (and a warning) if it could not be."""
        body = json.dumps(desired.model_dump(mode="json"), indent=2).encode()
        try:
            ensure_private_dir(self.path.parent)
            replace_private(self.path, body)
        except OSError as exc:
            log.warning("cannot cache the desired state in %s: %s", self.path, exc)
            return False
        return True
