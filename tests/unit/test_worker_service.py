"""``edgefleet worker install-service``: the systemd unit it prints and writes, the
environment file that keeps the worker's secret out of the unit, and refusals that write
nothing."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefleet.cli.main import app
from edgefleet.worker.credential import credential_path
from edgefleet.worker.runner import DRAIN_TIMEOUT, KILL_GRACE
from edgefleet.worker.service_unit import STOP_MARGIN
from support import clean_cli_env

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

JOIN_TOKEN = "efj_Zq7joinTOKENnotToBeSeen"
SECRET = "s" * 40
UNIT = "edgefleet-worker-site-a-1.service"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean EDGEFLEET_* environment whose home does not exist yet."""
    return clean_cli_env(monkeypatch, tmp_path / "home", API_URL="https://hub.example:8443")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    folder = tmp_path / "units"
    folder.mkdir()
    return folder


def install(*args: str):
    return CliRunner().invoke(app, ["worker", "install-service", *args])


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key, []).append(value)
    return found


def test_dry_run_prints_the_unit_and_hides_the_join_token(home: Path, units: Path) -> None:
    result = install(
        *("-H", "site-a-1", "-c", "4", "-q", "default,gpu", "--label", "site=plant 1"),
        *("--label", "note=$HOME 50%"),  # doubled: systemd expands neither
        *("--grace-period", "120", "--join-token", JOIN_TOKEN, "--unit-dir", str(units)),
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert JOIN_TOKEN not in result.output
    unit = directives(result.stdout)
    edgefleet = str(Path(sys.executable).absolute().parent / "edgefleet")
    assert unit["ExecStart"] == [
        f"{edgefleet} worker --edge-hostname site-a-1 --api-url https://hub.example:8443 "
        '--concurrency 4 --queues default,gpu --label "site=plant 1" --label "note=$$HOME 50%%" '
        "--grace-period 120.0"
    ]
    assert unit["Restart"] == ["on-failure"] and unit["RestartSec"] == ["5"]
    assert unit["KillMode"] == ["mixed"]  # SIGTERM to the worker alone: it drains its jobs
    assert unit["TimeoutStopSec"] == [str(int(120 + KILL_GRACE + DRAIN_TIMEOUT + 10 + STOP_MARGIN))]
    assert unit["After"] == unit["Wants"] == ["network-online.target"]
    assert unit["Environment"] == [f"EDGEFLEET_HOME={home}"]
    assert unit["WorkingDirectory"] == [str(home)]
    env_file = credential_path(home, "site-a-1").with_name("service.env")
    assert unit["EnvironmentFile"] == [str(env_file)]
    assert unit["EDGEFLEET_JOIN_TOKEN"] == ["********"]
    assert f"# {units / UNIT}" in result.stdout
    assert "systemctl daemon-reload && systemctl enable --now " + UNIT in result.stdout
    assert not home.exists() and not any(units.iterdir())


def test_written_files_have_their_modes_and_the_token_only_in_the_private_one(
    home: Path, units: Path
) -> None:
    result = install("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--unit-dir", str(units))
    assert result.exit_code == 0, result.output
    unit_file = units / UNIT
    env_file = credential_path(home, "site-a-1").with_name("service.env")
    assert stat.S_IMODE(unit_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert JOIN_TOKEN not in unit_file.read_text() and JOIN_TOKEN not in result.output
    assert env_file.read_text() == f"EDGEFLEET_JOIN_TOKEN={JOIN_TOKEN}\n"
    assert sorted(p.name for p in units.iterdir()) == [UNIT]  # no temporary file left
    assert "next: systemctl daemon-reload && systemctl enable --now " + UNIT in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(home: Path, units: Path) -> None:
    result = install(
        *("-H", "site-a-1", "--label", 'note=$HOME 50% "quoted"', "--join-token", JOIN_TOKEN),
        *("--unit-dir", str(units)),
    )
    assert result.exit_code == 0, result.output
    done = subprocess.run(
        ["systemd-analyze", "verify", str(units / UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert UNIT not in done.stderr, done.stderr  # a setting systemd ignored is a warning here


def _stored_credential(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = credential_path(home, "site-a-1")
    path.parent.mkdir(parents=True)
    path.write_text("{}")


def _secret_in_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_SECRET", SECRET)


def _secret_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "secret").write_text(SECRET)


@pytest.mark.parametrize(
    ("identity", "carried"),
    [
        (_stored_credential, None),  # the worker finds it in EDGEFLEET_HOME
        (_secret_file, None),  # likewise
        (_secret_in_environment, f"EDGEFLEET_SECRET={SECRET}\n"),  # the service needs it
    ],
)
def test_identity_without_a_join_token(
    identity, carried: str | None, home: Path, units: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity(home, monkeypatch)
    result = install("-H", "site-a-1", "--unit-dir", str(units))
    assert result.exit_code == 0, result.output
    text = (units / UNIT).read_text()
    env_file = credential_path(home, "site-a-1").with_name("service.env")
    assert SECRET not in text and SECRET not in result.output
    if carried is None:
        assert "EnvironmentFile" not in text and not env_file.exists()
    else:
        assert f"EnvironmentFile={env_file}" in text
        assert env_file.read_text() == carried


def test_options_before_the_subcommand_and_a_user_unit(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    result = CliRunner().invoke(
        app,
        ["worker", "-c", "3", "install-service", "-H", "site-a-1", "--user"]
        + ["--join-token", JOIN_TOKEN, "--no-long-poll"],
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "config" / "systemd" / "user" / UNIT).read_text()
    unit = directives(text)
    assert unit["ExecStart"][0].endswith("--concurrency 3 --no-long-poll")
    assert unit["WantedBy"] == ["default.target"] and "After" not in unit
    assert "systemctl --user daemon-reload" in result.stdout


def test_enable_runs_systemctl(
    home: Path, units: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    result = install("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--unit-dir", str(units))
    assert result.exit_code == 0 and not calls.exists()  # not without --enable
    result = install(
        "-H", "site-a-1", "--join-token", JOIN_TOKEN, "--unit-dir", str(units), "--enable"
    )
    assert result.exit_code == 0, result.output
    assert calls.read_text() == f"daemon-reload\nenable --now {UNIT}\n"


@pytest.mark.parametrize(
    "args",
    [
        ("-H", "bad name", "--join-token", JOIN_TOKEN),
        ("-H", "a/b", "--join-token", JOIN_TOKEN),
        ("--join-token", JOIN_TOKEN),  # no -H
        ("-H", "site-a-1"),  # no identity at all
        ("-H", "site-a-1", "--join-token", "efj_$(reboot)"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "-c", "0"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--heartbeat-interval", "x"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--no-such-option"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "stray"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "-q", "bad queue"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--label", "novalue"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--api-url", "ftp://x"),
        ("-H", "site-a-1", "--join-token", JOIN_TOKEN, "--ca-file", "/no/such/ca.pem"),
        ("-H", "site-a-1", "-c", "0", "--dry-run"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: tuple[str, ...], home: Path, units: Path
) -> None:
    result = install(*args, "--unit-dir", str(units))
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "reboot" not in result.stderr and result.stdout == ""
    assert not home.exists() and not any(units.iterdir())


def test_enable_without_systemctl_writes_nothing(
    home: Path, units: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = install(
        "-H", "site-a-1", "--join-token", JOIN_TOKEN, "--unit-dir", str(units), "--enable"
    )
    assert result.exit_code == 1
    assert "no systemctl" in result.stderr
    assert not home.exists() and not any(units.iterdir())
