"""Human output: ages instead of timestamps, commands shell-quoted, tables that fit."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta

import pytest

from edgefleet.cli.fit import fit_widths
from edgefleet.cli.jobs import JOB_COLUMNS, for_table
from edgefleet.cli.output import (
    OutputFormat,
    age,
    duration,
    local_time,
    print_listing,
    print_table,
    readable_value,
    shell_words,
    with_ages,
)

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "expected"),
    [
        (0, "0s ago"),
        (12, "12s ago"),
        (59.9, "59s ago"),
        (60, "1m ago"),
        (3 * 60 + 59, "3m ago"),
        (2 * 3600 + 10, "2h ago"),
        (23 * 3600 + 3599, "23h ago"),
        (4 * 86400 + 7200, "4d ago"),
        (-5, "in 5s"),
        (-0.4, "0s ago"),
    ],
)
def test_age_is_said_in_its_largest_whole_unit(seconds_ago: float, expected: str) -> None:
    moment = NOW - timedelta(seconds=seconds_ago)
    assert age(moment.isoformat(), NOW) == expected


def test_age_reads_api_timestamps_with_z_and_without_zone() -> None:
    assert age("2024-05-01T11:59:48Z", NOW) == "12s ago"
    assert age("2024-05-01T11:57:00", NOW) == "3m ago"  # no zone: UTC
    assert age(None, NOW) is None
    assert age("not a time", NOW) is None


def test_duration() -> None:
    assert [duration(s) for s in (0, 1.5, 61, 7200, 90000)] == ["0s", "1s", "1m", "2h", "1d"]


def test_commands_are_shell_quoted_so_they_can_be_pasted_back() -> None:
    command = ["python3", "-c", "print('hi there')", "a b", "plain", ""]
    shown = shell_words(command)
    assert shown == "python3 -c 'print('\"'\"'hi there'\"'\"')' 'a b' plain ''"
    assert shlex.split(shown) == command
    assert shell_words(None) is None


def _job(**fields):
    job = {
        "id": 7,
        "state": "running",
        "queue": "default",
        "worker": "w1",
        "attempt": 1,
        "exit_code": None,
        "command": ["echo", "hello world"],
        "queued_at": (datetime.now(UTC) - timedelta(seconds=200)).isoformat(),
        "started_at": (datetime.now(UTC) - timedelta(seconds=30)).isoformat(),
        "finished_at": None,
        "cancel_requested": False,
        "waiting_reason": None,
        "reason": None,
    }
    return {**job, **fields}


def test_the_jobs_table_shows_quoted_commands_and_ages_and_leaves_the_rows_alone() -> None:
    job = _job()
    (row,) = for_table([job])
    assert row["command"] == "echo 'hello world'"
    assert row["queued_at"] == "3m ago"
    assert row["started_at"].endswith("s ago")
    assert row["finished_at"] is None
    assert job["command"] == ["echo", "hello world"]  # JSON output is given the rows as read
    assert with_ages([job], ["queued_at"])[0]["started_at"] == job["started_at"]


def test_tables_fit_a_120_column_terminal_when_not_a_tty(capsys, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    long_command = ["python3", "-c", "x" * 300, "an argument with spaces"]
    print_table(for_table([_job(command=long_command, reason="r" * 200)]), JOB_COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 120
    assert "COMMAND" in lines[0]


def test_the_workers_table_says_when_an_override_ends_in_local_time() -> None:
    from edgefleet.cli.list_workers import with_expiry

    now = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)
    row = {"concurrency_source": "operator", "concurrency_until": None}
    assert with_expiry(row, now) == row
    later = (now + timedelta(hours=2, minutes=5)).astimezone(UTC).isoformat()
    shown = with_expiry({**row, "concurrency_until": later}, now)
    assert shown["concurrency_source"] == "operator until 14:05"
    tomorrow = (now + timedelta(days=1, seconds=30)).astimezone(UTC).isoformat()
    shown = with_expiry({**row, "concurrency_until": tomorrow}, now)
    assert shown["concurrency_source"] == f"operator until {now + timedelta(days=1):%Y-%m-%d} 12:00"


def test_a_workers_row_with_an_expiring_override_fits_120_columns_unfolded(
    capsys, monkeypatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    from edgefleet.cli.list_workers import WORKER_COLUMNS, _readable

    ago = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    until = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    worker = {
        "hostname": "site-a-edge-17",
        "state": "running",
        "queues": ["default", "gpu"],
        "concurrency": 16,
        "concurrency_source": "operator",
        "concurrency_until": until,
        "applied_concurrency": 12,
        "desired_version": 12,
        "applied_version": 11,
        "applied_at": ago,
        "jobs_running": 12,
        "maintenance_comment": None,
        "last_heartbeat": ago,
    }
    print_table(_readable([worker]), WORKER_COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines  # a heading and one row: nothing folded
    assert max(len(line) for line in lines) <= 120
    assert "12/11" in lines[1] and "default,gpu" in lines[1] and "operator until" in lines[1]


def test_output_to_no_terminal_is_120_wide_whatever_columns_says(capsys, monkeypatch) -> None:
    """A pipe or a file gets one layout: a parent's ``COLUMNS`` (pytest-xdist sets 80) does
    not narrow it."""
    command = ["python3", "-c", "print('a rather long line of python, for a table to show')"]
    rows = for_table([_job(command=command)])
    monkeypatch.setenv("COLUMNS", "80")
    print_table(rows, JOB_COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert 80 < max(len(line) for line in lines) <= 120


def test_timestamps_read_in_local_time_with_the_date_only_when_not_today() -> None:
    now = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)
    soon = (now + timedelta(minutes=5, seconds=7)).astimezone(UTC)
    assert local_time(soon.isoformat(), now) == "12:05"
    assert local_time(soon.isoformat(), now, seconds=True) == "12:05:07"
    later = (now + timedelta(days=2)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert local_time(later, now) == f"{now + timedelta(days=2):%Y-%m-%d} 12:00"
    assert readable_value(soon.isoformat(), now) == "12:05:07"
    # Only whole timestamps: other strings and values are left as they are.
    for value in (4, None, ["default"], "default", "2024-05-01", "at 2024-05-01T12:00:00Z"):
        assert readable_value(value, now) == value


def test_free_text_gives_way_first_and_names_keep_their_width() -> None:
    headings = ["WORKER", "FIELD", "COMMENT"]
    rows = [["plant1-gpu-worker-0003", "concurrency_until", "link is bad " * 8]]
    assert fit_widths(headings, rows, 200) == [22, 17, 96]  # fits: natural widths
    assert fit_widths(headings, rows, 60) == [22, 17, 21]  # the comment wraps at words
    # Too narrow to keep the names whole: the widest column narrows first.
    assert fit_widths(headings, rows, 30) == [10, 10, 10]
    assert fit_widths(headings, [["a", "b", "a " * 20]], 14)[:2] == [6, 5]


def _audit_entries() -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "id": 3,
            "at": (now - timedelta(minutes=3)).isoformat(),
            "actor": "root@ops-laptop",
            "target": "plant1-gpu-worker-0003",
            "field": "concurrency_until",
            "old": (now + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
            "new": (now + timedelta(days=2, hours=1)).isoformat().replace("+00:00", "Z"),
            "comment": "link is bad, cutting it for the next hour while the provider looks",
        },
        {
            "id": 2,
            "at": (now - timedelta(hours=3)).isoformat(),
            "actor": "edgefleet-server",
            "target": "site-a-edge-17",
            "field": "queues",
            "old": ["default"],
            "new": ["default", "gpu", "night-batch"],
            "comment": None,
        },
    ]


def test_the_audit_table_shows_times_readably_and_keeps_words_whole(capsys, monkeypatch):
    from edgefleet.cli.audit import AUDIT_COLUMNS, for_table

    monkeypatch.delenv("COLUMNS", raising=False)
    entries = _audit_entries()
    print_listing(entries, OutputFormat.TABLE, AUDIT_COLUMNS, for_table)
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert "T" not in "".join(line.split("COMMENT")[0] for line in lines[1:])  # no ISO
    first = lines[1].split()
    assert first[:5] == [
        "3m",
        "ago",
        "root@ops-laptop",
        "plant1-gpu-worker-0003",
        "concurrency_until",
    ]
    assert first[5] == local_time(entries[0]["old"], seconds=True)
    assert " ".join(first[6:8]) == local_time(entries[0]["new"], seconds=True)
    assert "default,gpu,night-batch" in text  # a value without spaces is not cut
    assert "3h ago" in text
    assert " ".join(text.split()).count("link is bad, cutting it for the next hour") == 1

    print_listing(entries, OutputFormat.JSON, AUDIT_COLUMNS, for_table)
    assert json.loads(capsys.readouterr().out) == entries  # JSON keeps ISO timestamps


def test_cells_are_shown_as_written_not_as_markup(capsys, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table(
        [{"comment": "moved to [gpu] queue [/]", "name": "漢字-edge"}],
        [
            ("comment", "COMMENT"),
            ("name", "NAME"),
        ],
    )
    assert capsys.readouterr().out.splitlines()[1].split() == [
        "moved",
        "to",
        "[gpu]",
        "queue",
        "[/]",
        "漢字-edge",
    ]
