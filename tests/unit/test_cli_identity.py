"""Who the CLI and the worker are to the server, chosen without a server: an operator token
(--token-file or EDGEFLEET_TOKEN), else a secret this machine already holds, else a clear
refusal; and the token commands' local checks and output (scripted server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import jwt
import pytest
from click.testing import CliRunner

from edgefleet.cli import api
from edgefleet.cli.api import AdminClient, ApiError
from edgefleet.cli.main import app
from edgefleet.settings import Settings

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

SECRET = "k" * 40


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean EDGEFLEET_* environment with an empty home; returns the home."""
    for key in list(os.environ):
        if key.startswith("EDGEFLEET_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("EDGEFLEET_HOME", str(home))
    monkeypatch.setenv("EDGEFLEET_API_URL", "http://edgefleet.test")
    monkeypatch.setenv("EDGEFLEET_ACTOR", "alice@desk")
    return home


def _bearer_sent(settings: Settings) -> str:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"].removeprefix("Bearer "))
        return httpx.Response(200, json=[])

    client = AdminClient(settings, transport=httpx.MockTransport(handler))
    client.get("/workers")
    client.close()
    return seen[0]


def test_an_operator_token_from_the_environment_is_sent_as_is(env, monkeypatch):
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_from-env")
    monkeypatch.setenv("EDGEFLEET_SECRET", SECRET)  # a token wins over the secret
    assert _bearer_sent(Settings()) == "efo_from-env"


def test_a_token_file_wins_over_the_environment(env, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_from-env")
    path = tmp_path / "token"
    path.write_text("  efo_from-file\n")
    path.chmod(0o600)
    assert _bearer_sent(Settings(token_file=path)) == "efo_from-file"


@pytest.mark.parametrize("content", ["", "  \n", "efo_a efo_b\n"])
def test_an_empty_or_odd_token_file_is_refused(env, tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ApiError, match=f"token file {path}"):
        AdminClient(Settings(token_file=path))
    with pytest.raises(ApiError, match="cannot read the token file"):
        AdminClient(Settings(token_file=tmp_path / "missing"))


def test_the_secret_mints_an_admin_token_named_after_the_operator(env, monkeypatch):
    monkeypatch.setenv("EDGEFLEET_SECRET", SECRET)
    claims = jwt.decode(
        _bearer_sent(Settings()), SECRET, algorithms=["HS256"], audience="edgefleet"
    )
    assert (claims["sub"], claims["role"]) == ("alice@desk", "admin")


def test_a_secret_file_already_in_the_home_is_used(env):
    env.mkdir()
    (env / "secret").write_text(SECRET + "\n")
    claims = jwt.decode(
        _bearer_sent(Settings()), SECRET, algorithms=["HS256"], audience="edgefleet"
    )
    assert claims["role"] == "admin"


def test_without_token_or_secret_the_cli_names_edgefleet_token_and_creates_nothing(env):
    result = CliRunner().invoke(app, ["list-workers"])
    assert result.exit_code == 1
    assert "EDGEFLEET_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (env / "secret").exists()

    result = CliRunner().invoke(app, ["ui-token"])
    assert result.exit_code == 1
    assert "no shared secret" in result.stderr
    assert not (env / "secret").exists()


def test_the_global_token_file_option_reaches_the_client(env, tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("efo_cli\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json=[])

    _script_server(monkeypatch, handler)
    result = CliRunner().invoke(app, ["--token-file", str(path), "list-workers", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert seen == ["Bearer efo_cli"]


# --- the worker's identity ----------------------------------------------------------------


def test_a_worker_with_no_identity_refuses_to_start_and_says_what_to_do(env):
    result = CliRunner().invoke(app, ["worker", "-H", "edge-1"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "edgefleet token create-join" in message and "--join-token" in message
    assert not (env / "secret").exists()


def test_a_refused_join_token_is_one_line_with_the_servers_reason(env, monkeypatch):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/health":  # the worker's start-up check of TLS
            return httpx.Response(200, json={"status": "ok"})
        assert request.url.path == "/api/v1/edge/enroll"
        return httpx.Response(401, json={"detail": "join token used up"})

    real = httpx.AsyncClient.__init__

    def scripted(self, *args, **kwargs):
        kwargs["transport"] = httpx.MockTransport(handler)
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", scripted)
    result = CliRunner().invoke(app, ["worker", "-H", "edge-1", "--join-token", "efj_x"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: join token refused (HTTP 401): join token used up"), (
        result.stderr
    )
    assert not (env / "workers" / "edge-1" / "credential").exists()


# --- token commands -----------------------------------------------------------------------


def _script_server(monkeypatch: pytest.MonkeyPatch, handler) -> None:
    monkeypatch.setattr(
        api,
        "AdminClient",
        lambda settings: AdminClient(settings, transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "create", "--name", "ci", "--role", "root"], "--role"),
        (["token", "create", "--name", "ci", "--role", "viewer", "--ttl", "soon"], "--ttl"),
        (["token", "create", "--name", "ci", "--role", "viewer", "--ttl", "10s"], "--ttl"),
        (["token", "create", "--name", "", "--role", "viewer"], "--name"),
        (["token", "create", "--name", "ci bot", "--role", "viewer"], "--name"),
        (["token", "create-join", "--ttl", "0"], "--ttl"),
        (["token", "create-join", "--ttl", "31d"], "--ttl"),
        (["token", "create-join", "--uses", "0"], "--uses"),
        (["token", "create-join", "--label", "no-equals"], "--label"),
        (["token", "create-join", "--label", "=v"], "--label"),
    ],
)
def test_bad_token_arguments_exit_2_before_asking_the_server(env, monkeypatch, args, message):
    _script_server(monkeypatch, lambda request: pytest.fail(f"asked the server: {request}"))
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_admin")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_token_create_prints_the_token_alone_on_stdout(env, monkeypatch):
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/v1/tokens")
        bodies.append(json.loads(request.content))
        answer = {"token": "efo_new", "name": "ci", "role": "viewer", "expires_at": "2030-01-01"}
        return httpx.Response(201, json=answer)

    _script_server(monkeypatch, handler)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_admin")
    result = CliRunner().invoke(app, ["token", "create", "--role", "viewer", "--name", "ci"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "efo_new\n"
    assert "viewer token 'ci'" in result.stderr
    assert bodies == [{"name": "ci", "role": "viewer", "ttl_seconds": 90 * 86400}]

    result = CliRunner().invoke(
        app, ["token", "create", "--role", "viewer", "--name", "ci", "--ttl", "12h", "-o", "json"]
    )
    assert json.loads(result.stdout)["token"] == "efo_new"
    assert bodies[-1]["ttl_seconds"] == 12 * 3600


def test_token_create_join_sends_uses_and_labels(env, monkeypatch):
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/tokens/join"
        bodies.append(json.loads(request.content))
        answer = {"token": "efj_new", "expires_at": "2030-01-01", "uses": 3, "labels": {}}
        return httpx.Response(201, json=answer)

    _script_server(monkeypatch, handler)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_admin")
    args = [
        "token",
        "create-join",
        "--uses",
        "3",
        "--label",
        "site=a",
        "-l",
        "rack=7",
        "-o",
        "json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["token"] == "efj_new"
    assert bodies == [{"ttl_seconds": 3600, "uses": 3, "labels": {"site": "a", "rack": "7"}}]


def test_token_revoke_and_a_403_show_the_servers_message(env, monkeypatch):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            assert request.url.raw_path == b"/api/v1/tokens/ci%20bot"
            return httpx.Response(204)
        return httpx.Response(403, json={"detail": "role viewer may not do this (needs admin)"})

    _script_server(monkeypatch, handler)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_admin")
    result = CliRunner().invoke(app, ["token", "revoke", "ci bot"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ci bot: revoked\n"
    result = CliRunner().invoke(app, ["token", "list"])
    assert result.exit_code == 1
    assert "needs admin" in result.stderr


def test_revoke_remote_edge_worker_targets_like_the_other_control_commands(env, monkeypatch):
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/workers/actions/revoke"
        bodies.append(json.loads(request.content))
        change = {"hostname": "site-a-1", "field": "state", "old": "idle", "new": "revoked"}
        answer = {
            "workers": ["site-a-1"],
            "changes": [{**change, "desired_version": 4}],
            "versions": {"site-a-1": 4},
        }
        return httpx.Response(200, json=answer)

    _script_server(monkeypatch, handler)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_admin")
    runner = CliRunner()
    result = runner.invoke(app, ["revoke-remote-edge-worker", "-H", "site-a-*"])
    assert result.exit_code == 0, result.output
    assert "site-a-1" in result.stdout and "revoked" in result.stdout
    result = runner.invoke(app, ["revoke-remote-edge-worker", "--all"], input="n\n")
    assert result.exit_code == 1
    assert "aborted" in result.stderr
    result = runner.invoke(app, ["revoke-remote-edge-worker", "--all", "--yes"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["revoke-remote-edge-worker", "-H", "a", "--all"])
    assert result.exit_code == 2
    assert bodies == [{"edge_hostname": "site-a-*"}, {"all": True}]
