"""Each CLI option read by ``edgefleet.parsing`` refuses bad text as a usage error (exit 2):
one line, ``error: [OPTION: ]message``, before anything is sent anywhere."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgefleet.cli.main import app

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

#: Nothing listens here: a command that got as far as the server would fail differently.
NOWHERE = {"EDGEFLEET_API_URL": "http://127.0.0.1:9", "EDGEFLEET_HOME": "/nonexistent/edgefleet"}

CASES = [
    (["worker", "-q", " , "], "give at least one queue"),
    (["worker", "-q", "default,g pu"], "bad queue name 'g pu'"),
    (["worker", "--label", "site"], "--label: 'site' is not KEY=VALUE"),
    (["worker", "--label", "si te=x"], "--label: bad label 'si te=x': use KEY=VALUE with a key"),
    (["token", "create-join", "--label", "site"], "--label: 'site' is not KEY=VALUE"),
    (["token", "create-join", "--label", "k=\x07"], "the value holds control characters"),
    (["submit", "--env", "NOEQUALS", "--", "true"], "--env: 'NOEQUALS' is not KEY=VALUE"),
    (["submit", "--secret-env", "hunter2", "--", "true"], "--secret-env: a value is not KEY="),
    (["set-worker-concurrency", "--selector", "site", "-c", "3"], "bad selector: 'site'"),
    (["set-worker-concurrency", "--selector", " , ", "-c", "3"], "empty selector"),
    (["add-worker-queues", "--all", "-q", ","], "give at least one queue"),
    (["remove-worker-queues", "--all", "-q", "a/b"], "bad queue name 'a/b'"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_option_text_is_a_usage_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env=NOWHERE)
    shown = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert message in shown, shown
    assert "hunter2" not in shown
