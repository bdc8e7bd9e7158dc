"""The soak's accounting: the jobs' own marks of each execution, and what they prove.

A soak job marks its own executions (``JOB_SOURCE``); ``run_twice`` and
``unclaimed_with_free_slot`` judge them against the server's records, as defined in
``bench/soak.py``. Pure functions of data, so they are tested without a fleet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from support.records import parse_time

#: Seconds after a run's end within which its worker's death may leave that end unrecorded.
KILL_WINDOW = 1.0
REQUEUE = frozenset({"submitted", "lost", "failed", "released"})

JOB_SOURCE = """\
import fcntl, json, os, sys, time
marks, seconds = sys.argv[1], float(sys.argv[2])
job = os.environ["EDGEFLEET_JOB_ID"]
lock = os.open(os.path.join(marks, job + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    alone = True
except BlockingIOError:
    alone = False
run = os.urandom(8).hex()
def mark(event):
    line = json.dumps({"event": event, "run": run, "t": time.time(), "alone": alone,
        "job": int(job), "attempt": int(os.environ["EDGEFLEET_JOB_ATTEMPT"]),
        "worker": os.environ["EDGEFLEET_WORKER"]}) + "\\n"
    fd = os.open(os.path.join(marks, "runs.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, line.encode())
    os.close(fd)
mark("start")
time.sleep(seconds)
mark("end")
"""


@dataclass
class Execution:
    job: int
    attempt: int
    worker: str
    start: float
    alone: bool
    end: float | None = None


def read_executions(marks: Path) -> list[Execution]:
    runs: dict[str, Execution] = {}
    path = marks / "runs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        mark = json.loads(line)
        if mark["event"] == "start":
            keys = ("job", "attempt", "worker", "alone")
            runs[mark["run"]] = Execution(start=mark["t"], **{k: mark[k] for k in keys})
        else:
            runs[mark["run"]].end = mark["t"]
    return sorted(runs.values(), key=lambda run: run.start)


def run_twice(
    runs: list[Execution], history: list[dict], stops: Mapping[str, list[float]]
) -> tuple[list[str], int]:
    """(why it ran twice, re-runs after an unrecorded end) of one job; see the docstring."""
    bad, window = [], 0
    if not all(run.alone for run in runs):
        bad.append("two executions alive at once")
    if any(n > 1 for n in Counter(run.attempt for run in runs).values()):
        bad.append("one attempt executed twice")
    succeeded = {e["attempt"] for e in history if e["event"] == "succeeded"}
    for done in [run for run in runs if run.end is not None]:
        if not any(later.start > done.end for later in runs):
            continue
        killed = any(0 <= t - done.end <= KILL_WINDOW for t in stops.get(done.worker, ()))
        if done.attempt in succeeded or not killed:
            bad.append(f"ran again after attempt {done.attempt} ran to its end")
        else:
            window += 1
    return bad, window


def waits(view: dict) -> list[tuple[float, float]]:
    """The intervals the job sat queued: from a (re-)queueing event to the next start."""
    out, since = [], None
    for event in view["history"]:
        at = parse_time(event["at"])
        if since is not None and event["event"] in ("started", "cancelled"):
            out.append((since, at))
            since = None
        if event["event"] in REQUEUE and event["state"] == "queued":
            since = at
    return out + ([(since, time.time())] if since is not None else [])


def unclaimed_with_free_slot(view: dict, samples: list[tuple[float, set[str]]]) -> float:
    """The longest stretch the job waited while every sample showed a free slot for it."""
    longest = 0.0
    for since, until in waits(view):
        stretch = last = None
        for t, free in samples:
            if not since <= t < until:
                continue
            if view["queue"] in free:
                stretch, last = t if stretch is None else stretch, t
            elif stretch is not None:
                longest, stretch = max(longest, last - stretch), None
        if stretch is not None:
            longest = max(longest, until - stretch)
    return longest
