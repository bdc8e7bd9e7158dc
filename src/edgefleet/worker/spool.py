"""The worker's local spool: what it owes the server, kept on disk until the server has it.

Layout, under ``EDGEFLEET_HOME/spool/<hostname>/`` (one directory per worker name, so several
workers can share a home):

- ``outbox/<key>-<kind>-<job>-<attempt>.json``: one message per file (a result, a log chunk,
  a hand-back), written atomically (temporary file, fsync, rename) before it is first sent
  and deleted once the server answered. ``key`` orders messages; a restarted worker replays
  what is left in that order.
- ``running/<job>-<attempt>.json``: the process group of each job while it runs, so a worker
  restarted after a crash can kill what its predecessor left running.

Results and hand-backs are never dropped. Log chunks are: past ``max_log_bytes`` waiting in
the spool (a long outage with chatty jobs), new chunks are refused and counted instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """What a spooled message is; its value is the middle of the file name, so it never
    changes (a spool written by an older worker is read by a newer one)."""

    RESULT = "result"
    LOG = "log"
    RELEASE = "release"


class Run(NamedTuple):
    """One attempt of one job: the messages of a run are delivered in order (a lane)."""

    job_id: int
    attempt: int


class Leftover(NamedTuple):
    """A job a previous process of this worker was running when it ended (``running/``);
    a field its record lacks (or holds something else than a number) is None."""

    job_id: int | None
    attempt: int | None
    pid: int | None
    #: When ``pid`` started (see ``process_start``), to tell a reused pid.
    start: int | None

    @classmethod
    def from_record(cls, record: object) -> Leftover:
        fields = record if isinstance(record, dict) else {}
        return cls(*(_number(fields.get(name)) for name in ("job", "attempt", "pid", "start")))


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: Log bytes the spool holds at most while the server is away (results are never capped).
DEFAULT_MAX_LOG_BYTES = 256 * 1024 * 1024
_KINDS = frozenset(Kind)
_NAME = re.compile(r"^(\d{12})-([a-z]+)-(\d+)-(\d+)\.json$")


class SpoolError(RuntimeError):
    """The spool directory cannot be used (bad hostname, unwritable home)."""


@dataclass(frozen=True)
class Entry:
    """One message owed to the server."""

    key: int
    kind: Kind
    job_id: int
    attempt: int
    body: dict[str, Any]
    size: int = 0

    @property
    def filename(self) -> str:
        return f"{self.key:012d}-{self.kind}-{self.job_id}-{self.attempt}.json"

    @property
    def lane(self) -> Run:
        """Messages of one job attempt are delivered in order, one at a time."""
        return Run(self.job_id, self.attempt)


def spool_dir(home: Path, hostname: str) -> Path:
    if hostname in ("", ".", "..") or "/" in hostname or "\0" in hostname:
        raise SpoolError(f"unusable worker name for a spool directory: {hostname!r}")
    return home / "spool" / hostname


class Spool:
    def __init__(
        self, home: Path, hostname: str, max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    ) -> None:
        self.root = spool_dir(home, hostname)
        self.outbox = self.root / "outbox"
        self.running_dir = self.root / "running"
        self.max_log_bytes = max_log_bytes
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            self.running_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool in {self.root}: {exc}") from exc
        self._sizes: dict[str, int] = {}
        self.log_bytes = 0
        self._next_key = 1

    # --- messages -----------------------------------------------------------------------

    def load(self) -> list[Entry]:
        """Every message left on disk, oldest first; unreadable files are set aside."""
        self._sizes.clear()
        self.log_bytes = 0
        entries = []
        for path in sorted(self.outbox.iterdir()):
            match = _NAME.match(path.name)
            if match is None:
                continue  # a temporary file from an interrupted write, or a stranger
            key, kind, job_id, attempt = match.groups()
            try:
                data = path.read_bytes()
                body = json.loads(data)
            except (OSError, ValueError) as exc:
                log.error("spool: cannot read %s (%s); moving it aside", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".corrupt"))
                continue
            if kind not in _KINDS or not isinstance(body, dict):
                continue
            entry = Entry(int(key), Kind(kind), int(job_id), int(attempt), body, len(data))
            self._track(entry)
            entries.append(entry)
        self._next_key = max((e.key for e in entries), default=0) + 1
        return entries

    def put(self, kind: Kind, job_id: int, attempt: int, body: dict[str, Any]) -> Entry | None:
        """Write a message to disk before it is sent; None if a log chunk was refused for
        lack of room. Results and hand-backs are always written (fsync'd, they matter)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown spool message kind {kind!r}")
        kind = Kind(kind)
        data = json.dumps(body, separators=(",", ":")).encode()
        if kind is Kind.LOG and self.log_bytes + len(data) > self.max_log_bytes:
            return None
        entry = Entry(self._next_key, kind, job_id, attempt, body, len(data))
        self._next_key += 1
        _write_atomically(self.outbox / entry.filename, data, durable=kind is not Kind.LOG)
        self._track(entry)
        return entry

    def remove(self, entry: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.outbox / entry.filename).unlink()
        size = self._sizes.pop(entry.filename, None)
        if size is not None and entry.kind is Kind.LOG:
            self.log_bytes -= size

    def _track(self, entry: Entry) -> None:
        self._sizes[entry.filename] = entry.size
        if entry.kind is Kind.LOG:
            self.log_bytes += entry.size

    def __len__(self) -> int:
        return len(self._sizes)

    # --- running jobs --------------------------------------------------------------------

    def mark_running(self, run: Run, pid: int) -> None:
        start = process_start(pid)
        record = {"job": run.job_id, "attempt": run.attempt, "pid": pid, "start": start}
        _write_atomically(self._marker(run), json.dumps(record).encode(), False)

    def clear_running(self, run: Run) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._marker(run).unlink()

    def leftovers(self) -> list[Leftover]:
        """Jobs a previous process of this worker was running when it ended."""
        found = []
        for path in sorted(self.running_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(Leftover.from_record(json.loads(path.read_text())))
            with contextlib.suppress(OSError):
                path.unlink()
        return found

    def _marker(self, run: Run) -> Path:
        return self.running_dir / f"{run.job_id}-{run.attempt}.json"


def _write_atomically(path: Path, data: bytes, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
