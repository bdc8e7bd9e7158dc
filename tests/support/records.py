"""Jobs that record their own start and end times, and the maths to check limits from them.

A recording job is a short Python program run by the worker like any other job. It appends
one JSON line when it starts and one when it ends to a shared file (single ``O_APPEND`` writes,
so lines from parallel jobs never interleave), each carrying the job's id, attempt and worker
from the environment the worker gives it, its own pid and its parent's pid (the worker process).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

RECORDER_SOURCE = """\
import json, os, sys, time
path, seconds, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def record(event):
    line = json.dumps({
        "event": event,
        "t": time.time(),
        "job": int(os.environ["EDGEFLEET_JOB_ID"]),
        "attempt": int(os.environ["EDGEFLEET_JOB_ATTEMPT"]),
        "worker": os.environ["EDGEFLEET_WORKER"],
        "pid": os.getpid(),
        "ppid": os.getppid(),
    }) + "\\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
record("start")
time.sleep(seconds)
record("end")
sys.exit(code)
"""


@dataclass(frozen=True)
class JobRun:
    """One execution of a recording job, as the job itself saw it (``time.time()`` seconds)."""

    job: int
    attempt: int
    worker: str
    pid: int
    ppid: int
    start: float
    end: float | None  # None while running (or if it was killed)

    def running_at(self, t: float) -> bool:
        """Half-open: running from ``start`` up to, not including, ``end``."""
        return self.start <= t and (self.end is None or t < self.end)


class JobRecorder:
    """Builds recording-job commands and reads back what the jobs recorded in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def command(self, seconds: float = 1.0, exit_code: int = 0) -> list[str]:
        """A job: record start, sleep ``seconds``, record end, exit with ``exit_code``."""
        return [
            sys.executable,
            "-I",
            "-c",
            RECORDER_SOURCE,
            str(self.path),
            repr(float(seconds)),
            str(exit_code),
        ]

    def events(self) -> list[dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # A line being written at this very moment may be incomplete: only take whole lines.
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def runs(self) -> list[JobRun]:
        """One JobRun per job process that started, in start order."""
        starts: dict[int, dict] = {}
        ends: dict[int, dict] = {}
        for event in self.events():
            table = starts if event["event"] == "start" else ends
            assert event["pid"] not in table, f"duplicate {event['event']} record: {event}"
            table[event["pid"]] = event
        assert set(ends) <= set(starts), f"end without start: {set(ends) - set(starts)}"
        runs = [
            JobRun(
                job=s["job"],
                attempt=s["attempt"],
                worker=s["worker"],
                pid=pid,
                ppid=s["ppid"],
                start=s["t"],
                end=ends[pid]["t"] if pid in ends else None,
            )
            for pid, s in starts.items()
        ]
        return sorted(runs, key=lambda r: r.start)

    def finished(self) -> list[JobRun]:
        return [r for r in self.runs() if r.end is not None]

    def running(self) -> list[JobRun]:
        return [r for r in self.runs() if r.end is None]


def running_at(runs: list[JobRun], t: float) -> list[JobRun]:
    """The runs in progress at time ``t``."""
    return [r for r in runs if r.running_at(t)]


def max_overlap(runs: list[JobRun], start: float | None = None, end: float | None = None) -> int:
    """The largest number of runs in progress at one instant within ``[start, end]``.

    The count only rises when a run starts, so the maximum is reached at ``start`` or at some
    run's start inside the window; those are the only instants examined.
    """
    points = [r.start for r in runs]
    if start is not None:
        points = [p for p in points if p >= start] + [start]
    if end is not None:
        points = [p for p in points if p <= end]
    return max((len(running_at(runs, p)) for p in points), default=0)


def parse_time(value: str) -> float:
    """An API timestamp (ISO 8601, ``Z`` or offset) as POSIX seconds, comparable to time.time()."""
    return datetime.fromisoformat(value).timestamp()
