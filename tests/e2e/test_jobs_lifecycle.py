"""End-to-end: a job's life through the CLI: options, slots, retries, timeout, cancel,
history, live logs, the log cap, retention, and refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobs_support import jobs_fixture, python_job  # noqa: F401 - fixture

from support import EDGEFLEET, max_overlap, wait_until
from support.cli import describe


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_env_cwd_timeout_and_retries_from_the_cli(
    server, start_worker, cli, cli_json, jobs, tmp_path
):
    start_worker("options-edge", concurrency=3)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    shown = cli_json(
        "submit", "--env", "GREETING=hello world", "-e", "EMPTY=", "--cwd", str(workdir),
        "--", "sh", "-c", 'echo "$GREETING|$EMPTY|$(pwd)"; env | grep -c EDGEFLEET_SECRET || true',
    )  # fmt: skip
    pidfile = tmp_path / "grandchild.pid"
    slow = cli_json(
        "submit", "--timeout", "1", "--", "sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"
    )
    flaky = cli_json(
        "submit", "--retries", "2", "--retry-delay", "0.2", "--",
        "sh", "-c", 'echo "attempt $EDGEFLEET_JOB_ATTEMPT"; exit 7',
    )  # fmt: skip

    done = jobs.wait_finished([shown["id"], slow["id"], flaky["id"]], timeout=90)
    assert done[shown["id"]]["state"] == "success"
    assert cli("logs", shown["id"], check=True).stdout == f"hello world||{workdir}\n0\n"

    timed_out = done[slow["id"]]
    assert (timed_out["state"], timed_out["reason"]) == ("failed", "timed out after 1s")
    wait_until(lambda: not _alive(int(pidfile.read_text())), message="the whole group killed")

    failed = cli_json("jobs", "show", flaky["id"])
    assert (failed["state"], failed["attempt"], failed["max_attempts"]) == ("failed", 3, 3)
    assert failed["exit_code"] == 7
    assert "no retries left (3 of 3 attempts)" in failed["reason"]
    events = [(e["event"], e["state"], e["attempt"]) for e in failed["history"]]
    assert events == [
        ("submitted", "queued", 0),
        ("started", "running", 1),
        ("failed", "queued", 1),
        ("started", "running", 2),
        ("failed", "queued", 2),
        ("started", "running", 3),
        ("failed", "failed", 3),
    ]
    assert failed["history"][0]["actor"] == "test-operator"
    assert all(e["worker"] == "options-edge" for e in failed["history"][1:])
    assert cli("logs", flaky["id"], check=True).stdout == "attempt 1\nattempt 2\nattempt 3\n"
    assert cli("logs", flaky["id"], "--attempt", "2", check=True).stdout == "attempt 2\n"

    table = cli("jobs", "show", flaky["id"], check=True).stdout
    assert "history:" in table and "retrying in" in table
    for heading in ("EVENT", "ATTEMPT", "WORKER", "EXIT", "REASON"):
        assert heading in table


def test_slots_are_budgeted_and_an_oversized_job_says_why_it_waits(
    server, start_worker, cli, cli_json, jobs, job_recorder
):
    start_worker("slotted-edge", concurrency=4)
    heavy = [jobs.submit(job_recorder.command(1.0), slots=3) for _ in range(3)]
    light = [jobs.submit(job_recorder.command(0.5)) for _ in range(4)]
    huge = cli_json("submit", "--slots", "5", "--", "true")["id"]

    views = jobs.wait_finished(heavy + light, timeout=90)
    assert {v["state"] for v in views.values()} == {"success"}
    runs = job_recorder.runs()
    slots = {job_id: 3 for job_id in heavy} | {job_id: 1 for job_id in light}
    for run in runs:  # at any start, the slots of all runs in progress fit the concurrency
        in_progress = [r for r in runs if r.running_at(run.start)]
        assert sum(slots[r.job] for r in in_progress) <= 4, in_progress
    assert max_overlap([r for r in runs if r.job in heavy]) == 1

    waiting = cli_json("jobs", "show", huge)
    assert waiting["state"] == "queued"
    assert waiting["waiting_reason"] == (
        "needs 5 slots, but the largest live worker serving queue 'default' offers 4"
    )
    table = cli("jobs", "list", "--state", "queued", check=True).stdout
    assert "needs 5 slots" in table


@pytest.fixture
def slow_heartbeats(edgefleet_env: dict[str, str]) -> float:
    """Heartbeats every 30 s (and an offline timeout to match): whatever reaches the worker
    sooner came through its long-poll."""
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "150"
    return 30.0


def test_cancel_a_queued_and_a_running_job(
    slow_heartbeats, server, start_worker, cli, cli_json, jobs, job_recorder
):
    start_worker("cancel-edge", concurrency=1, heartbeat_interval=slow_heartbeats)
    running = jobs.submit(job_recorder.command(120.0))
    (run,) = wait_until(job_recorder.running, message="job running")
    queued = jobs.submit(job_recorder.command(0.0))

    result = cli("cancel", queued, check=True)
    assert result.stdout.strip() == f"{queued}: cancelled"
    result = cli("cancel", running, check=True)
    assert "cancel requested" in result.stdout

    view = jobs.wait_state(running, "cancelled", timeout=20)
    assert not _alive(run.pid)
    assert view["reason"] == "cancelled while running on cancel-edge"
    assert [e["event"] for e in view["history"]] == [
        "submitted",
        "started",
        "cancel_requested",
        "cancelled",
    ]
    assert jobs.get(queued)["state"] == "cancelled"
    assert [r.job for r in job_recorder.runs()] == [running]  # the queued one never started

    after = jobs.submit(job_recorder.command(0.0))
    jobs.wait_state(after, "success")
    refused = cli("cancel", after, 987654)
    assert refused.returncode == 1, describe(refused)
    assert "already ended as success" in refused.stderr
    assert "no job 987654" in refused.stderr
    assert cli_json("cancel", running)[0]["state"] == "cancelled"  # again: no change


@pytest.mark.same_on_every_backend  # the CLI's follow loop
def test_logs_follow_tails_a_running_job_until_it_ends(
    server, start_worker, cli, jobs, edgefleet_env
):
    start_worker("chatty-edge", concurrency=1)
    code = (
        "import time\nfor i in range(8):\n    print('step', i, flush=True)\n    time.sleep(0.4)\n"
    )
    job = jobs.submit(python_job(code))
    follower = subprocess.run(
        [str(EDGEFLEET), "logs", str(job), "--follow"],
        env=edgefleet_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert follower.returncode == 0, follower.stderr
    assert follower.stdout == "".join(f"step {i}\n" for i in range(8))
    assert jobs.get(job)["state"] == "success"


@pytest.fixture
def small_log_cap(edgefleet_env: dict[str, str]) -> int:
    edgefleet_env["EDGEFLEET_JOB_LOG_MAX_BYTES"] = "20000"
    return 20000


def test_the_log_cap_truncates_the_log_not_the_job(small_log_cap, server, start_worker, cli, jobs):
    worker = start_worker("verbose-edge", concurrency=1)
    code = "import sys\nfor i in range(4000):\n    print('x' * 99)\nprint('finished')\n"
    job = jobs.submit(python_job(code))
    view = jobs.wait_state(job, "success", timeout=60)
    assert (view["exit_code"], view["log_truncated"]) == (0, True)
    log = cli("logs", job, check=True).stdout
    assert log.count("log truncated") == 1
    assert "limit of 20000 bytes" in log
    assert "finished" not in log
    assert len(log.encode()) < small_log_cap + 1000
    assert [e["event"] for e in jobs.get(job)["history"]].count("log_truncated") == 1
    wait_until(lambda: "no more output is sent" in worker.log_text(), timeout=10)


@pytest.fixture
def short_retention(edgefleet_env: dict[str, str]) -> None:
    edgefleet_env["EDGEFLEET_JOB_RETENTION"] = "1"


def test_finished_jobs_are_purged_after_the_retention(
    short_retention, server, start_worker, cli, jobs
):
    start_worker("tidy-edge", concurrency=1)
    done = jobs.submit(["sh", "-c", "echo bye"])
    jobs.wait_state(done, "success")
    kept = jobs.submit(["true"], queue="nobody-serves-this")
    wait_until(lambda: cli("jobs", "show", done).returncode == 1, timeout=30, message="job purged")
    assert f"no job {done}" in cli("logs", done).stderr
    assert jobs.get(kept)["state"] == "queued"


def test_bad_input_is_refused_clearly_and_changes_nothing(server, cli, cli_json):
    cases = [
        (["submit", "--env", "NOEQUALS", "--", "true"], 2, "is not KEY=VALUE"),
        (["submit", "--env", "1X=y", "--", "true"], 1, "env"),
        (["submit", "--cwd", "relative/dir", "--", "true"], 1, "cwd"),
        (["submit", "--retries", "-1", "--", "true"], 2, "retries"),
        (["submit", "--timeout", "0", "--", "true"], 1, "timeout"),
        (["submit", "--slots", "0", "--", "true"], 2, "slots"),
        (["cancel", "424242"], 1, "no job 424242"),
        (["logs", "424242", "--follow"], 1, "no job 424242"),
        (["jobs", "list", "--state", "bogus"], 1, "state"),
    ]
    for args, code, text in cases:
        result = cli(*args)
        assert result.returncode == code, describe(result)
        assert text in result.stderr + result.stdout, describe(result)
    assert cli_json("jobs", "list") == []


@pytest.mark.same_on_every_backend  # the worker's job environment
def test_jobs_do_not_see_the_workers_secret(server, start_worker, jobs, edgefleet_env):
    start_worker("discreet-edge", concurrency=1)
    job = jobs.submit(python_job("import json, os; print(json.dumps(dict(os.environ)))"))
    jobs.wait_state(job, "success")
    env = json.loads(jobs.log(job))
    assert "EDGEFLEET_SECRET" not in env
    assert (env["EDGEFLEET_JOB_ID"], env["EDGEFLEET_WORKER"]) == (str(job), "discreet-edge")
    assert Path(sys.executable).exists()
