"""The soak's accounting: the jobs' own marks of each execution, and what they prove.

A soak job marks its own executions (``JOB_SOURCE``); ``run_twice`` and
``unclaimed_with_free_slot`` judge them against the server's records, as defined in
``support/soak.py``, and ``Outcome`` adds it all up. Nothing here talks to a process, so it is
tested without a fleet.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from support.records import parse_time

FINAL = frozenset({"success", "failed", "cancelled"})
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
class Stop:
    """When a worker's jobs could have been killed: from the SIGKILL, or for SIGTERM from the
    end of its grace period (on the harness's clock; the worker's own deadline is a little
    later), until the harness saw the process gone. A job outlives its SIGKILLed worker by
    the moment the worker takes to die (its end mark can come after the signal), and a
    result it never reported is the at-least-once window, not a second run."""

    earliest: float
    latest: float = float("inf")


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
    runs: list[Execution], history: list[dict], stops: Mapping[str, list[Stop]]
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
        rerun = min(later.start for later in runs if later.start > done.end)
        killed = any(
            stop.earliest <= rerun and done.end <= stop.latest
            for stop in stops.get(done.worker, ())
        )
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


def evidence(view: dict | None, runs: list[Execution], stops: Mapping[str, list[Stop]]) -> str:
    """A job's server history, its executions and its workers' stops, on one clock: what a
    failed soak prints, since a rerun will not repeat it."""
    lines = [
        f"  {parse_time(e['at']):.3f} server {e['event']} attempt {e.get('attempt')} "
        f"{e.get('worker') or ''} {e.get('reason') or ''}".rstrip()
        for e in (view or {}).get("history", [])
    ]
    for run in runs:
        lines.append(f"  {run.start:.3f} run start attempt {run.attempt} {run.worker}")
        if run.end is not None:
            lines.append(f"  {run.end:.3f} run end attempt {run.attempt} {run.worker}")
    for worker in sorted({run.worker for run in runs}):
        lines += [
            f"  {stop.earliest:.3f} stop {worker} (until {stop.latest:.3f})"
            for stop in stops.get(worker, ())
        ]
    return "\n".join(sorted(lines, key=lambda line: float(line.split()[0])))


@dataclass
class Outcome:
    """Every job's fate, from the server's records and the jobs' own marks."""

    states: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # by reason, numbers and names out
    lost: dict[int, str] = field(default_factory=dict)
    twice: dict[int, list[str]] = field(default_factory=dict)
    evidence: dict[int, str] = field(default_factory=dict)  # what each job run twice shows
    window: int = 0  # re-runs after an unrecorded end
    executions: int = 0
    longest_wait: tuple[float, int] = (0.0, 0)  # (seconds, job)
    chaos: Counter[str] = field(default_factory=Counter)  # actions done, by kind
    acked: int = 0  # jobs the server acknowledged
    unanswered: int = 0  # submissions never answered

    def judge(
        self,
        job: int,
        view: dict | None,
        runs: list[Execution],
        stops: Mapping[str, list[Stop]],
        samples: list[tuple[float, set[str]]],
    ) -> None:
        """Count one job: ``view`` is the server's (None: missing), ``runs`` its marks."""
        if view is None or view["state"] not in FINAL:
            self.lost[job] = f"state {view['state'] if view else 'missing'}"
        elif view["state"] == "success" and not any(
            (r.attempt, r.worker) == (view["attempt"], view["worker"]) and r.end for r in runs
        ):
            self.lost[job] = "success without a finished execution of that attempt"
        elif view["state"] == "failed":
            reason = re.sub(r"\d+(\.\d+)?", "N", view["reason"] or "-")
            self.failed[re.sub(r"soak-N-N", "W", reason)] += 1
        bad, rerun = run_twice(runs, view["history"] if view else [], stops)
        self.window += rerun
        if bad:
            self.twice[job] = bad
            self.evidence[job] = evidence(view, runs, stops)
        if view is not None:
            self.states[view["state"]] += 1
            self.longest_wait = max(
                self.longest_wait, (unclaimed_with_free_slot(view, samples), job)
            )

    def print(self) -> None:
        print(f"chaos actions   {dict(self.chaos)}")
        print(f"jobs submitted  {self.acked} acknowledged ({self.unanswered} unanswered)")
        print(f"succeeded       {self.states['success']}")
        print(f"failed          {self.states['failed']}")
        for reason, n in self.failed.most_common():
            print(f"    {n:5d}  {reason}")
        print(
            f"executions      {self.executions}, of which re-runs after an unrecorded end "
            f"(worker killed as the job ended): {self.window}"
        )
        print(f"lost            {len(self.lost)}  {dict(list(self.lost.items())[:10])}")
        print(f"run twice       {len(self.twice)}  {dict(list(self.twice.items())[:10])}")
        for job in list(self.evidence)[:3]:
            print(f"job {job}:\n{self.evidence[job]}")
        seconds, job = self.longest_wait
        print(f"longest unclaimed with a free slot: {seconds:.1f} s (job {job})")
