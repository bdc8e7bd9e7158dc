"""``edgefleet top``: the fleet at a glance, redrawn in place every few seconds.

A frame costs three reads, all open to the viewer role: ``GET /workers``, ``GET /queues`` and
the newest entries of ``GET /audit``. While the server cannot be reached the frame keeps the
last data it had, with a one-line status above it, and the next refresh tries again.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgefleet.cli.context import admin_client
from edgefleet.cli.output import age, console, duration, readable_value

if TYPE_CHECKING:
    from rich.console import Group

    from edgefleet.cli.api import AdminClient
    from edgefleet.cli.fit import FittedTable

#: Audit entries a frame shows, newest first.
AUDIT_ROWS = 8

#: Headings of the tables, in the order of ``worker_row``, ``queue_row`` and ``audit_row``.
WORKER_COLUMNS = ("HOSTNAME", "STATE", "DESIRED", "APPLIED", "SOURCE", "SLOTS", "JOBS", "QUEUES")
#: ``CAP`` is the queue's fleet-wide limit (``set-queue-concurrency``), "-" when it has none.
QUEUE_COLUMNS = ("QUEUE", "QUEUED", "RUNNING", "CAP", "OLDEST_QUEUED")
AUDIT_COLUMNS = ("WHEN", "ACTOR", "WORKER", "FIELD", "CHANGE", "COMMENT")


@dataclass(frozen=True)
class Frame:
    """What one refresh shows: the last data read, and the problem of the last read (if
    it failed; the data is then from ``read_at``, an earlier read)."""

    server: str
    workers: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    read_at: datetime | None = None
    problem: str | None = None


def refresh(client: AdminClient, last: Frame) -> Frame:
    """``last`` with fresh data, or with the reason none could be read."""
    from edgefleet.cli.api import ApiError

    try:
        workers = client.get("/workers")
        queues = client.get("/queues")
        audit = client.get("/audit", params={"limit": AUDIT_ROWS})
    except ApiError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return replace(last, server=client.base_url, problem=first_line)
    return Frame(client.base_url, workers, queues, audit, datetime.now(UTC))


def render(frame: Frame, interval: float | None, now: datetime | None = None) -> Group:
    """The frame as Rich renderables: status line, worker counts, then the three tables."""
    from rich.console import Group
    from rich.text import Text

    now = now or datetime.now(UTC)
    status = Text(status_line(frame, interval, now), no_wrap=True, overflow="ellipsis")
    parts: list[Any] = [status]
    if frame.read_at is not None:
        parts += [
            Text(state_counts(frame.workers)),
            _workers_table(frame.workers),
            _queues_table(frame.queues),
            _audit_table(frame.audit, now),
        ]
    return Group(*parts)


def status_line(frame: Frame, interval: float | None, now: datetime) -> str:
    every = f"every {interval:g}s, Ctrl-C to quit" if interval is not None else "once"
    if frame.problem is None:
        return f"edgefleet top: {frame.server} at {now:%H:%M:%S} UTC ({every})"
    seen = f"; data from {age(frame.read_at, now)}" if frame.read_at else ""
    again = ", retrying" if interval is not None else ""
    return f"server unavailable{again}: {frame.problem}{seen}"


def state_counts(workers: list[dict[str, Any]]) -> str:
    """``workers: 3 (idle 2, running 1)``."""
    counts = Counter(worker["state"] for worker in workers)
    by_state = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
    return f"workers: {len(workers)}" + (f" ({by_state})" if by_state else "")


def worker_row(worker: dict[str, Any]) -> tuple[str, ...]:
    applied = worker.get("applied_concurrency")
    pending = "" if worker.get("converged", True) else " (pending)"
    return (
        worker["hostname"],
        worker["state"],
        str(worker["concurrency"]),
        ("-" if applied is None else str(applied)) + pending,
        worker.get("concurrency_source") or "-",
        f"{worker.get('slots_used', 0)}/{worker['concurrency']}",
        str(worker.get("jobs_running", 0)),
        ",".join(worker.get("queues") or []),
    )


def queue_row(queue: dict[str, Any]) -> tuple[str, ...]:
    cap, oldest = queue.get("cap"), queue.get("oldest_queued_age_seconds")
    return (
        queue["queue"],
        str(queue["queued"]),
        str(queue["running"]),
        "-" if cap is None else str(cap),
        "-" if oldest is None else duration(oldest),
    )


def audit_row(entry: dict[str, Any], now: datetime) -> tuple[str, ...]:
    return (
        age(entry["at"], now) or "-",
        entry["actor"],
        entry["target"],
        entry["field"],
        f"{_value(entry.get('old'), now)} -> {_value(entry.get('new'), now)}",
        entry.get("comment") or "",
    )


def _value(value: Any, now: datetime | None = None) -> str:
    """A value of a change: a timestamp in local time, a list comma-joined."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(readable_value(value, now))


def _table(title: str, headings: tuple[str, ...], rows: list[tuple[str, ...]]) -> FittedTable:
    """One line a row: names, states and ages whole; long text cut with "…" to fit."""
    from edgefleet.cli.fit import FittedTable

    return FittedTable(headings, rows, title=title, one_line=True, gap=2)


def _workers_table(workers: list[dict[str, Any]]) -> FittedTable:
    return _table("workers", WORKER_COLUMNS, [worker_row(w) for w in workers])


def _queues_table(queues: list[dict[str, Any]]) -> FittedTable:
    return _table(
        "queues (with jobs, a cap or a worker)", QUEUE_COLUMNS, [queue_row(q) for q in queues]
    )


def _audit_table(entries: list[dict[str, Any]], now: datetime) -> FittedTable:
    return _table("latest changes", AUDIT_COLUMNS, [audit_row(e, now) for e in entries])


def top(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.2, help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (1 if the server failed).")
    ] = False,
) -> None:
    """A live view of the fleet: workers and their concurrency, queues, latest changes."""
    try:
        with admin_client(ctx) as client:
            frame = refresh(client, Frame(client.base_url))
            if once:
                console().print(render(frame, None))
                if frame.problem is not None:
                    raise typer.Exit(1)
                return
            _live(client, frame, interval)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a live view ends: a clean exit


def _live(client: AdminClient, frame: Frame, interval: float) -> None:
    """Redraw in place until Ctrl-C; a failed read keeps the last data on screen."""
    from rich.live import Live

    with Live(render(frame, interval), console=console(), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            frame = refresh(client, frame)
            live.update(render(frame, interval), refresh=True)
