"""Running one job: its process group is the unit of control, and nothing it spawned
outlives it (timeout, cancel, a finished main process, a crashed worker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefleet.contract import JobState
from edgefleet.worker.runner import JobProcess, job_environment, kill_leftover_group
from edgefleet.worker.spool import process_start
from support import wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its reaper is as good as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run(process: JobProcess):
    return asyncio.run(process.run())


def spawner(tmp_path: Path, seconds: int = 60) -> tuple[list[str], Path]:
    """A job that starts a grandchild in its own group and writes the grandchild's pid."""
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep {seconds} & echo $! > {pidfile}; wait"
    return ["sh", "-c", script], pidfile


def test_success_failure_and_output(tmp_path: Path) -> None:
    out: list[bytes] = []
    ok = run(JobProcess(["sh", "-c", "echo out; echo err >&2"], out.append, os.environ))
    assert (ok.state, ok.exit_code, ok.reason) == (JobState.SUCCESS, 0, None)
    assert b"".join(out) == b"out\nerr\n"
    failed = run(JobProcess(["sh", "-c", "exit 4"], out.append, os.environ))
    assert (failed.state, failed.exit_code, failed.reason) == (
        JobState.FAILED,
        4,
        "exited with code 4",
    )


def test_a_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    command, pidfile = spawner(tmp_path)
    outcome = run(JobProcess(command, lambda _: None, os.environ, timeout=0.5))
    assert outcome.state == JobState.FAILED
    assert outcome.reason == "timed out after 0.5s"
    wait_until(lambda: not alive(int(pidfile.read_text())), timeout=10)


def test_what_a_finished_job_left_running_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    command = ["sh", "-c", f"sleep 60 > /dev/null 2>&1 & echo $! > {pidfile}"]
    outcome = run(JobProcess(command, lambda _: None, os.environ))
    assert outcome.state == JobState.SUCCESS
    wait_until(lambda: not alive(int(pidfile.read_text())), timeout=10)


def test_output_held_open_by_an_escaped_process_does_not_hang_the_job(tmp_path: Path) -> None:
    # setsid leaves the job's group, but keeps its stdout: the job still ends when it exits.
    pidfile = tmp_path / "escaped.pid"
    command = ["sh", "-c", f"setsid sleep 30 & echo $! > {pidfile}; echo main"]
    started = time.monotonic()
    out: list[bytes] = []
    try:
        outcome = run(JobProcess(command, out.append, os.environ))
        assert outcome.state == JobState.SUCCESS and b"main" in b"".join(out)
        assert time.monotonic() - started < 20
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_kill_reports_the_callers_outcome_and_escalates_to_sigkill(tmp_path: Path) -> None:
    async def scenario():
        process = JobProcess(
            ["sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"],
            lambda _: None,
            os.environ,
            kill_grace=0.3,
        )
        task = asyncio.create_task(process.run())
        while process.pid is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        process.kill(JobState.CANCELLED, "cancelled by an operator")
        process.kill(JobState.FAILED, "a second reason is ignored")
        return await asyncio.wait_for(task, 10)

    outcome = asyncio.run(scenario())
    assert (outcome.state, outcome.reason) == (JobState.CANCELLED, "cancelled by an operator")
    assert outcome.exit_code == -signal.SIGKILL


def test_a_kill_after_the_main_process_exited_keeps_its_outcome(tmp_path: Path) -> None:
    # An escaped process holds the output open, so the run is still reading when the kill
    # (a cancel, a grace period running out) comes: the job had done its work and succeeded.
    pidfile = tmp_path / "escaped.pid"
    escape = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' &"
    command = ["sh", "-c", f"{escape} while [ ! -s {pidfile} ]; do sleep 0.01; done; exit 0"]

    async def scenario():
        process = JobProcess(command, lambda _: None, os.environ)
        task = asyncio.create_task(process.run())
        while process.pid is None or alive(process.pid):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the loop has seen the exit; the output is still open
        assert not task.done()
        process.kill(JobState.FAILED, "killed: the grace period ran out")
        return await asyncio.wait_for(task, 10)

    try:
        outcome = asyncio.run(scenario())
        assert (outcome.state, outcome.exit_code, outcome.reason) == (JobState.SUCCESS, 0, None)
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_job_killed_before_it_started_never_starts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    async def scenario():
        process = JobProcess(["touch", str(marker)], lambda _: None, os.environ)
        process.kill(JobState.CANCELLED, "cancelled")
        return await process.run()

    assert asyncio.run(scenario()).state == JobState.CANCELLED
    assert not marker.exists()


@pytest.mark.parametrize(
    ("command", "cwd", "expected"),
    [
        (["/nonexistent/cmd"], None, "could not start '/nonexistent/cmd'"),
        (["true"], "/nonexistent/dir", "could not start 'true' in /nonexistent/dir"),
        (["echo", "a\x00b"], None, "could not start 'echo'"),
    ],
)
def test_a_command_that_cannot_start_fails_with_the_reason(command, cwd, expected) -> None:
    outcome = run(JobProcess(command, lambda _: None, os.environ, cwd=cwd))
    assert outcome.state == JobState.FAILED and outcome.exit_code is None
    assert outcome.reason.startswith(expected)


def test_the_job_gets_its_env_and_cwd_but_not_the_workers_secret(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "EDGEFLEET_SECRET": "s" * 40, "KEEP": "1"}
    env = job_environment(base, {"GREETING": "hi"}, {"EDGEFLEET_JOB_ID": "7"})
    out: list[bytes] = []
    run(JobProcess(["sh", "-c", "pwd; env"], out.append, env, cwd=str(tmp_path)))
    text = b"".join(out).decode()
    assert text.splitlines()[0] == str(tmp_path)
    assert "GREETING=hi" in text and "KEEP=1" in text and "EDGEFLEET_JOB_ID=7" in text
    assert "EDGEFLEET_SECRET" not in text


DIES_WITH_PARENT = """
import asyncio, os, sys
from edgefleet.worker.runner import JobProcess
async def main():
    process = JobProcess(["sleep", "60"], lambda _: None, os.environ,
                         on_start=lambda pid: print(pid, flush=True))
    await process.run()
asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_job_dies_with_its_worker() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", DIES_WITH_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        job_pid = int(worker.stdout.readline())
        assert alive(job_pid)
        worker.kill()  # kill -9: no clean-up code runs in the worker
        worker.wait()
        wait_until(lambda: not alive(job_pid), timeout=10)
    finally:
        worker.kill()


def test_leftover_groups_are_killed_only_when_they_are_the_jobs() -> None:
    job = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        start = process_start(job.pid)
        assert not kill_leftover_group(job.pid, (start or 0) + 1, start)  # a reused pid
        assert alive(job.pid)
        assert kill_leftover_group(job.pid, start, process_start(job.pid))
        job.wait(10)
        assert not kill_leftover_group(job.pid, start, process_start(job.pid))  # gone
    finally:
        job.kill()
