"""The control commands against a scripted server: each one's Airflow-style name and flags
become one ``PATCH /workers`` request with the target and the change it names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner

from edgefleet.cli.main import app
from support import capture_admin_requests, clean_cli_env

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

ON_A = {"edge_hostname": "site-a-*"}

#: (command line, the request's target, its change)
COMMANDS = [
    (["set-worker-concurrency", "-H", "site-a-*", "-c", "4"], ON_A, {"concurrency": 4}),
    (["set-worker-concurrency", "--all", "--reset"], {"all": True}, {"reset": True}),
    (
        ["set-worker-concurrency", "-H", "site-a-*", "-c", "40", "--force"],
        ON_A,
        {"concurrency": 40, "force": True},
    ),
    (
        ["add-worker-queues", "--selector", "site=a,rack=2", "-q", "gpu, io"],
        {"selector": {"site": "a", "rack": "2"}},
        {"action": "add-queues", "queues": ["gpu", "io"]},
    ),
    (
        ["remove-worker-queues", "-H", "site-a-*", "--queues", "gpu"],
        ON_A,
        {"action": "remove-queues", "queues": ["gpu"]},
    ),
    (
        ["reset-worker-queues", "-l", "site=a"],
        {"selector": {"site": "a"}},
        {"action": "reset-queues"},
    ),
    (
        ["remote-edge-worker-request-maintenance", "-H", "site-a-*", "-c", "disk swap"],
        ON_A,
        {"action": "request-maintenance", "comments": "disk swap"},
    ),
    (
        ["remote-edge-worker-update-maintenance-comment", "--all", "--comments", "later"],
        {"all": True},
        {"action": "update-maintenance-comment", "comments": "later"},
    ),
    (
        ["remote-edge-worker-exit-maintenance", "-H", "site-a-*"],
        ON_A,
        {"action": "exit-maintenance"},
    ),
    (["shutdown-remote-edge-worker", "-H", "site-a-*"], ON_A, {"action": "shutdown"}),
    (["shutdown-all-workers", "--yes"], {"all": True}, {"action": "shutdown"}),
]


@pytest.fixture
def sent(tmp_path, monkeypatch) -> list[httpx.Request]:
    """The requests the commands send to a server that changes one worker, site-a-1."""
    clean_cli_env(
        monkeypatch, tmp_path / "home", API_URL="http://edgefleet.test", TOKEN="efo_operator"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        change = {"hostname": "site-a-1", "field": "f", "old": 1, "new": 2, "desired_version": 3}
        body = {"workers": ["site-a-1"], "changes": [change], "versions": {"site-a-1": 3}}
        return httpx.Response(200, json=body)

    return capture_admin_requests(monkeypatch, answer)


@pytest.mark.parametrize(("args", "target", "change"), COMMANDS, ids=lambda v: str(v)[:40])
def test_each_command_sends_one_patch_with_its_target_and_change(sent, args, target, change):
    result = CliRunner().invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    (request,) = sent
    assert (request.method, request.url.path) == ("PATCH", "/api/v1/workers")
    expected = {"action": "set-concurrency", **change} if "action" not in change else change
    assert json.loads(request.content) == {"target": target, "change": expected}
    assert json.loads(result.stdout)["versions"] == {"site-a-1": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set-worker-concurrency", "-c", "3"], "exactly one of -H/--edge-hostname"),
        (["set-worker-concurrency", "-H", "w", "--all", "-c", "3"], "exactly one of -H"),
        (["add-worker-queues", "-H", "w", "-l", "site=a", "-q", "x"], "exactly one of -H"),
        (["set-worker-concurrency", "-H", "w"], "exactly one of --concurrency"),
        (["add-worker-queues", "-H", "w", "-q", " , "], "at least one queue"),
        (["reset-worker-queues", "--selector", "site"], "KEY=VALUE"),
        (["shutdown-remote-edge-worker", "--all"], "No such option"),
        (
            ["remote-edge-worker-update-maintenance-comment", "-H", "w", "-c", "x", "--wait"],
            "No such option",
        ),
        (["shutdown-all-workers", "-H", "w", "--yes"], "No such option"),
        # A second -H would otherwise quietly replace the first.
        (
            ["set-worker-concurrency", "-H", "a", "-H", "b", "-c", "3"],
            "give -H/--edge-hostname once",
        ),
        (["set-worker-concurrency", "-H", "", "-c", "3"], "the worker name is empty"),
        (["set-worker-concurrency", "-H", "a", "-c", "3", "--timeout", "5"], "goes with --wait"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(sent, args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert sent == []


def test_shutdown_all_workers_asks_first(sent):
    result = CliRunner().invoke(app, ["shutdown-all-workers"], input="n\n")
    assert result.exit_code == 1 and "aborted; nothing changed" in result.stderr
    assert sent == []


def _sent_until(sent, args: list[str]) -> datetime:
    result = CliRunner().invoke(app, ["set-worker-concurrency", "-H", "w", "-c", "2", *args])
    assert result.exit_code == 0, result.output
    (request,) = sent
    change = json.loads(request.content)["change"]
    assert (change["action"], change["concurrency"]) == ("set-concurrency", 2)
    until = datetime.fromisoformat(change["until"])
    assert until.tzinfo is not None and until.isoformat() in result.stderr  # printed back
    return until


def test_for_sends_the_absolute_time_it_ends(sent):
    before = datetime.now(UTC)
    until = _sent_until(sent, ["--for", "2h"])
    assert before + timedelta(hours=2) <= until <= datetime.now(UTC) + timedelta(hours=2)


def test_until_a_time_of_day_is_the_next_one_in_local_time(sent):
    until = _sent_until(sent, ["--until", "18:00"]).astimezone()
    assert (until.hour, until.minute, until.second) == (18, 0, 0)
    assert timedelta(0) < until - datetime.now().astimezone() <= timedelta(days=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "0s"], "longer than 0s"),
        (["--for", "soon"], "bad duration"),
        (["--for", "-5m"], "bad duration"),
        (["--for", "1h", "--until", "18:00"], "at most one of --for and --until"),
        (["--until", "25:00"], "HH:MM"),
        (["--until", "2001-01-01T00:00+00:00"], "in the past"),
        (["--until", "2099-01-01T00:00"], "offset"),
        (["--for", "999999999d"], "too long"),
    ],
)
def test_a_bad_expiry_is_refused_before_anything_is_sent(sent, args, message):
    result = CliRunner().invoke(app, ["set-worker-concurrency", "-H", "w", "-c", "2", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sent == []


def test_an_expiry_does_not_go_with_reset(sent):
    result = CliRunner().invoke(
        app, ["set-worker-concurrency", "-H", "w", "--reset", "--for", "1h"]
    )
    assert result.exit_code == 2 and "--reset ends it now" in result.stderr
    assert sent == []


def test_a_refused_expiring_change_says_only_why(tmp_path, monkeypatch):
    """No "until ..." line ahead of the refusal: it would read as if something was set."""
    clean_cli_env(
        monkeypatch, tmp_path / "home", API_URL="http://edgefleet.test", TOKEN="efo_operator"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no worker named 'nosuch'", "code": "not_found"})

    capture_admin_requests(monkeypatch, answer)
    args = ["set-worker-concurrency", "-H", "nosuch", "-c", "2", "--for", "1h"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == ["error: no worker named 'nosuch'"]


@pytest.mark.parametrize("duration", ["400d", "0s"])
def test_a_schedule_window_out_of_range_is_refused_as_typed(sent, duration):
    args = ["schedule", "add", "--all", "--cron", "0 22 * * *", "-c", "2", "--for", duration]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"bad duration {duration!r}: a window lasts from 1s to 366d" in result.stderr
    assert sent == []


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["schedule", "remove", "all?x=1"], "/api/v1/schedules/all%3Fx%3D1"),
        (["schedule", "remove", "all#x"], "/api/v1/schedules/all%23x"),
        (["remove-remote-edge-worker", "-H", "site-b-1?x=1"], "/api/v1/workers/site-b-1%3Fx%3D1"),
        (["workers", "explain", "-H", "../tokens"], "/api/v1/workers/..%2Ftokens/explain"),
        (["token", "revoke", "a/b"], "/api/v1/tokens/a%2Fb"),
    ],
)
def test_a_name_in_a_path_names_only_itself(tmp_path, monkeypatch, args, path):
    """A name holding '?', '#' or '/' is sent quoted whole: the server looks it up as it is
    (and finds nothing), never the thing its prefix names."""
    clean_cli_env(
        monkeypatch, tmp_path / "home", API_URL="http://edgefleet.test", TOKEN="efo_operator"
    )
    sent = capture_admin_requests(
        monkeypatch, lambda _: httpx.Response(404, json={"error": "not_found", "detail": "none"})
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "error: none" in result.stderr, result.output
    (request,) = sent
    assert request.url.raw_path.decode() == path


@pytest.mark.parametrize(
    "args", [["schedule", "remove", ""], ["workers", "explain", "-H", ""], ["token", "revoke", ""]]
)
def test_an_empty_name_is_refused_before_anything_is_sent(sent, args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "name is empty" in result.stderr
    assert sent == []


def test_a_redirect_is_an_error_not_an_empty_answer(tmp_path, monkeypatch):
    clean_cli_env(
        monkeypatch, tmp_path / "home", API_URL="http://edgefleet.test", TOKEN="efo_operator"
    )
    capture_admin_requests(monkeypatch, lambda _: httpx.Response(307, headers={"location": "/x"}))
    result = CliRunner().invoke(app, ["schedule", "list"])
    assert result.exit_code == 1 and "HTTP 307" in result.stderr, result.output


def test_a_refused_query_names_its_parameter_and_a_body_its_field():
    """A query parameter by its name (``state``, not ``state.0``); a body field by its path."""
    from edgefleet.cli.api import _describe

    query = {"loc": ["query", "state", 0], "msg": "Input should be 'idle' or 'running'"}
    body = {"loc": ["body", "jobs", 3, "command"], "msg": "Field required"}
    assert _describe({"detail": [query]}) == "state: Input should be 'idle' or 'running'"
    assert _describe({"detail": [body]}) == "jobs.3.command: Field required"
    assert _describe({"detail": [{"loc": ["body"], "msg": "bad"}]}) == "request: bad"
