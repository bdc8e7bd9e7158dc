"""``--api-url`` / ``EDGEFLEET_API_URL`` on the command line: lists of replicas, and a
malformed entry refused in one line before anything else happens (worker and CLI alike)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from edgefleet.cli import api
from edgefleet.cli.api import AdminClient
from edgefleet.cli.main import app
from support import clean_cli_env

#: What they check does not depend on the database.
pytestmark = pytest.mark.same_on_every_backend

SECRET = "k" * 40
GOOD = "http://a.test:8080"
MALFORMED = [
    ("http://h:99999", "bad API URL 'http://h:99999': port 99999 is not between 1 and 65535"),
    (f"{GOOD},h:8080", "bad API URL 'h:8080': give http://HOST:PORT"),
    (f"{GOOD},,http://b.test", "an empty entry"),
    (f"{GOOD},http://b.test:0", "port 0 is not between 1 and 65535"),
]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return clean_cli_env(monkeypatch, tmp_path / "home", SECRET=SECRET)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("value", "message"), MALFORMED)
def test_a_malformed_url_in_the_list_stops_the_cli_and_the_worker(home, value, message):
    assert message in one_line_error(CliRunner().invoke(app, ["--api-url", value, "jobs", "list"]))
    result = CliRunner().invoke(app, ["worker", "-H", "edge-1", "--api-url", value])
    assert message in one_line_error(result)
    assert not (home / "workers").exists()  # nothing started, nothing written


def test_a_malformed_url_in_the_environment_stops_the_cli_and_the_worker(home, monkeypatch):
    value, message = MALFORMED[0]
    monkeypatch.setenv("EDGEFLEET_API_URL", value)
    assert message in one_line_error(CliRunner().invoke(app, ["list-workers"]))
    assert message in one_line_error(CliRunner().invoke(app, ["worker", "-H", "edge-1"]))


def test_the_cli_takes_replicas_from_a_repeated_option_and_moves_past_a_dead_one(home, monkeypatch):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "a.test":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=[])

    monkeypatch.setattr(
        api,
        "AdminClient",
        lambda settings: AdminClient(settings, transport=httpx.MockTransport(handler)),
    )
    args = ["--api-url", GOOD, "--api-url", "http://b.test", "list-workers", "-o", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == ["a.test", "b.test"]
