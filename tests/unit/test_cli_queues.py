"""``set-queue-concurrency`` and ``list-queues`` against a scripted server: the request each
sends, the table people read, and bad input refused in one line before anything is sent."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from edgefleet.cli.main import app
from support import capture_admin_requests, clean_cli_env

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

QUEUES = [
    {
        "queue": "gpu",
        "queued": 6,
        "running": 2,
        "oldest_queued_age_seconds": 75.0,
        "oldest_queued_at": "2026-01-01T00:00:00Z",
        "cap": 2,
    },
    {
        "queue": "io",
        "queued": 0,
        "running": 0,
        "oldest_queued_age_seconds": None,
        "oldest_queued_at": None,
        "cap": None,
    },
]


@pytest.fixture
def sent(tmp_path, monkeypatch) -> list[httpx.Request]:
    clean_cli_env(
        monkeypatch, tmp_path / "home", API_URL="http://edgefleet.test", TOKEN="efo_operator"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=QUEUES)
        body = json.loads(request.content)
        new = body.get("concurrency")
        return httpx.Response(200, json={"queue": "gpu", "old": 2, "new": new, "changed": True})

    return capture_admin_requests(monkeypatch, answer)


@pytest.mark.parametrize(
    ("args", "body", "printed"),
    [
        (["-q", "gpu", "-c", "40"], {"concurrency": 40}, "gpu: cap 2 -> 40"),
        (["--queue", "gpu", "--reset"], {"reset": True}, "gpu: cap 2 -> none"),
    ],
)
def test_set_queue_concurrency_sends_one_put(sent, args, body, printed):
    result = CliRunner().invoke(app, ["set-queue-concurrency", *args])
    assert result.exit_code == 0, result.output
    (request,) = sent
    assert (request.method, request.url.path) == ("PUT", "/api/v1/queues/gpu")
    assert json.loads(request.content) == body
    assert result.stdout.strip() == printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-q", "gpu", "-c", "0"], "--concurrency must be 1"),
        (["-q", "gpu", "-c", "-2"], "--concurrency must be 1"),
        (["-q", "gpu"], "exactly one of --concurrency N or --reset"),
        (["-q", "gpu", "-c", "3", "--reset"], "exactly one of --concurrency N or --reset"),
        (["-q", "g p u", "-c", "3"], "bad queue name"),
        (["-q", "gpu,io", "-c", "3"], "one queue at a time"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(sent, args, message):
    result = CliRunner().invoke(app, ["set-queue-concurrency", *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert sent == []


def test_list_queues_reads_as_ages_and_json_keeps_numbers(sent):
    table = CliRunner().invoke(app, ["list-queues"])
    assert table.exit_code == 0, table.output
    heading, gpu, io = (line.split() for line in table.stdout.strip().splitlines())
    assert heading == ["QUEUE", "CAP", "RUNNING", "QUEUED", "OLDEST_QUEUED"]
    assert gpu == ["gpu", "2", "2", "6", "1m", "ago"]
    assert io == ["io", "-", "0", "0", "-"]
    raw = CliRunner().invoke(app, ["list-queues", "-o", "json"])
    assert json.loads(raw.stdout) == QUEUES
