"""``edgefleet top`` without a server: its frame, its reads, and an unreachable server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from rich.console import Console

from edgefleet.cli.api import AdminClient
from edgefleet.cli.output import local_time
from edgefleet.cli.top import Frame, refresh, render
from edgefleet.settings import Settings

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WORKERS = [
    {
        "hostname": "edge-a",
        "state": "running",
        "concurrency": 4,
        "applied_concurrency": 4,
        "concurrency_source": "operator",
        "converged": True,
        "slots_used": 3,
        "jobs_running": 2,
        "queues": ["default", "gpu"],
    },
    {
        "hostname": "edge-b",
        "state": "idle",
        "concurrency": 2,
        "applied_concurrency": 1,
        "concurrency_source": "operator",
        "converged": False,
        "slots_used": 0,
        "jobs_running": 0,
        "queues": ["default"],
    },
]
QUEUES = [
    {"queue": "default", "queued": 5, "running": 2, "oldest_queued_age_seconds": 125.0},
    {"queue": "gpu", "queued": 0, "running": 1, "oldest_queued_age_seconds": None, "cap": 40},
]
AUDIT = [
    {
        "id": 3,
        "at": (NOW - timedelta(seconds=12)).isoformat(),
        "actor": "alice@ops",
        "target": "edge-b",
        "field": "concurrency",
        "old": 1,
        "new": 2,
        "comment": None,
    }
]


def text_of(frame: Frame, interval: float | None = None) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(frame, interval, NOW))
    return console.export_text()


def test_a_frame_shows_workers_queues_and_the_latest_changes() -> None:
    frame = Frame("http://srv", WORKERS, QUEUES, AUDIT, read_at=NOW)
    text = text_of(frame)
    lines = text.splitlines()
    assert "workers: 2 (idle 1, running 1)" in lines
    row_a = next(line.split() for line in lines if line.startswith("edge-a"))
    assert row_a == ["edge-a", "running", "4", "4", "operator", "3/4", "2", "default,gpu"]
    row_b = next(line.split() for line in lines if line.startswith("edge-b"))
    assert row_b[2:5] == ["2", "1", "(pending)"]
    queue_rows = {line.split()[0]: line.split() for line in lines if line.startswith(("d", "g"))}
    assert queue_rows["default"] == ["default", "5", "2", "-", "2m"]  # no cap: "-"
    assert queue_rows["gpu"] == ["gpu", "0", "1", "40", "-"]
    assert any(
        line.split() == ["12s", "ago", "alice@ops", "edge-b", "concurrency", "1", "->", "2"]
        for line in lines
    ), text
    assert max(len(line) for line in lines) <= 120


def _client(handler) -> AdminClient:
    settings = Settings(api_url="http://srv:1", token="efo_test")
    return AdminClient(settings, transport=httpx.MockTransport(handler))


def test_a_refresh_costs_three_reads() -> None:
    seen: list[str] = []
    answers = {"/api/v1/workers": WORKERS, "/api/v1/queues": QUEUES, "/api/v1/audit": AUDIT}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=json.dumps(answers[request.url.path]))

    client = _client(handler)
    try:
        frame = refresh(client, Frame(client.base_url))
    finally:
        client.close()
    assert sorted(seen) == ["/api/v1/audit", "/api/v1/queues", "/api/v1/workers"]
    assert (frame.workers, frame.queues, frame.audit, frame.problem) == (
        WORKERS,
        QUEUES,
        AUDIT,
        None,
    )


def test_an_unreachable_server_gives_a_one_line_status_and_keeps_the_last_data() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = _client(refuse)
    last = Frame("http://srv:1", WORKERS, QUEUES, AUDIT, read_at=NOW - timedelta(seconds=4))
    try:
        frame = refresh(client, last)
    finally:
        client.close()
    assert frame.problem and "\n" not in frame.problem
    assert frame.workers == WORKERS
    status = text_of(frame, interval=2).splitlines()[0]
    assert status.startswith("server unavailable, retrying: cannot reach")
    assert "data from 4s ago" in status
    assert "edge-a" in text_of(frame, interval=2)

    nothing_yet = refresh(_client(refuse), Frame("http://srv:1"))
    assert text_of(nothing_yet).strip().splitlines()[0].startswith("server unavailable: ")
    assert len(text_of(nothing_yet).strip().splitlines()) == 1


def test_the_latest_changes_keep_short_columns_whole_and_cut_only_the_comment() -> None:
    until = (NOW + timedelta(minutes=20)).isoformat()
    entry = {
        **AUDIT[0],
        "at": (NOW - timedelta(seconds=30)).isoformat(),
        "actor": "root@ops-laptop",
        "target": "WORKER-plant1-0001",
        "field": "concurrency_until",
        "old": None,
        "new": until,
        "comment": "link is bad, cutting it for the next hour while the provider looks " * 2,
    }
    frame = Frame("http://srv", WORKERS, QUEUES, [entry, *AUDIT], read_at=NOW)
    lines = text_of(frame).splitlines()
    assert max(len(line) for line in lines) <= 120
    row = next(line for line in lines if line.startswith("30s"))
    words = row.split()
    assert words[:5] == ["30s", "ago", "root@ops-laptop", "WORKER-plant1-0001", "concurrency_until"]
    assert words[5:8] == ["-", "->", local_time(until, NOW, seconds=True)]  # not ISO
    assert words[8:11] == ["link", "is", "bad,"] and row.rstrip().endswith("…")
    assert len(row.rstrip()) == 120  # the comment takes the rest of the line
