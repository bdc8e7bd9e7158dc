"""End-to-end: an operator changes a live worker's concurrency, and the limit holds.

Everything is checked from what the jobs recorded themselves (their own start and end times,
their parent's pid), next to what the server reports. No timing claims: the waits poll with
deadlines, and each check compares instants, not durations.
"""

from __future__ import annotations

import re
import time

import pytest

from edgefleet.worker.statefile import read_state
from support import max_overlap, parse_time, running_at, wait_until

HOST = "edge-runtime"


def _set_concurrency(cli, hostname: str, *args: str) -> None:
    cli("set-worker-concurrency", "-H", hostname, *args, check=True)


@pytest.mark.same_on_every_backend  # the worker's limiter (stored side: next test)
def test_concurrency_changes_at_runtime_hold_without_restart(
    server, admin_api, start_worker, cli, cli_json, job_recorder
):
    worker = start_worker(HOST, concurrency=2)
    initial = admin_api.worker(HOST)
    assert (initial["concurrency"], initial["applied_concurrency"]) == (2, 2)

    # Phase 1, concurrency 2 (the worker's flag): short jobs, then long ones queued behind.
    short = [admin_api.submit(job_recorder.command(1.2)) for _ in range(6)]
    long = [admin_api.submit(job_recorder.command(10.0)) for _ in range(5)]
    wait_until(lambda: len(job_recorder.finished()) >= 3, timeout=60, message="3 jobs done")

    # Phase 2: raised to 5 at runtime; the worker fetches more at once.
    raised_at = time.time()
    _set_concurrency(cli, HOST, "-c", "5")
    raised = admin_api.wait_applied(HOST, 5, pid=worker.pid)
    raise_acked = parse_time(raised["applied_at"])
    assert raised["concurrency_source"] == "operator"

    def all_long_jobs_running() -> bool:
        return len([r for r in job_recorder.running() if r.job in long]) == len(long)

    wait_until(all_long_jobs_running, timeout=60, message="the 5 long jobs running together")

    # Phase 3: lowered to 1 while 5 run; jobs queued after the acknowledgement wait their turn.
    lowered_at = time.time()
    _set_concurrency(cli, HOST, "-c", "1")
    lowered = admin_api.wait_applied(HOST, 1, pid=worker.pid)
    lower_acked = parse_time(lowered["applied_at"])
    late = [admin_api.submit(job_recorder.command(0.8)) for _ in range(3)]

    ids = short + long + late
    views = admin_api.wait_for_jobs(ids, timeout=120)
    runs = job_recorder.runs()

    # Every job ran exactly once, to success, in this one worker process.
    assert sorted(r.job for r in runs) == sorted(ids), "a job was lost or ran twice"
    assert all(r.end is not None for r in runs), [r for r in runs if r.end is None]
    for view in views.values():
        assert (view["state"], view["exit_code"], view["attempt"]) == ("success", 0, 1), view
        assert view["worker"] == HOST
    assert {r.ppid for r in runs} == {worker.pid}
    assert {(r.worker, r.attempt) for r in runs} == {(HOST, 1)}

    # 1: before the first change, never more than the flag's 2 at once (and 2 did run).
    assert max_overlap(runs, end=raised_at) == 2
    # Never more than the largest limit ever set.
    assert max_overlap(runs) <= 5
    # 2: between the raise's acknowledgement and the lowering, 5 at once (never more).
    assert max_overlap(runs, start=raise_acked, end=lowered_at) == 5

    # 3: the jobs running when the lower limit was acknowledged were left to finish...
    running_when_lowered = running_at(runs, lower_acked)
    assert len(running_when_lowered) >= 2, "the limit was not lowered while jobs ran"
    assert all(views[r.job]["state"] == "success" for r in running_when_lowered)
    # ...and no job claimed after the acknowledgement started while another one ran.
    claimed_after = [r for r in runs if parse_time(views[r.job]["started_at"]) > lower_acked]
    assert {r.job for r in claimed_after} >= set(late)
    for run in claimed_after:
        overlapping = running_at(runs, run.start)
        assert len(overlapping) <= 1, f"job {run.job} started while {overlapping} ran"
    last_old_end = max(r.end for r in running_when_lowered)
    assert min(r.start for r in claimed_after) >= last_old_end

    # The worker process was never restarted: same process, same registration throughout.
    assert worker.alive()
    (final,) = [w for w in cli_json("list-workers") if w["hostname"] == HOST]
    assert final["pid"] == worker.pid == initial["pid"]
    assert final["instance_id"] == initial["instance_id"]
    assert final["started_at"] == initial["started_at"]
    assert (final["concurrency"], final["applied_concurrency"]) == (1, 1)
    assert final["jobs_running"] == 0


def test_offline_worker_gets_central_value_and_reset_returns_control_to_flag(
    server, admin_api, start_worker, cli, job_recorder, edgefleet_home
):
    host = "edge-away"
    first = start_worker(host, concurrency=2)
    assert first.stop() == 0
    stopped = admin_api.wait_for_worker(host, lambda v: v["state"] == "stopped", timeout=15)

    # Set while the worker is down: allowed, because the server knows the worker.
    _set_concurrency(cli, host, "-c", "4")
    pending = admin_api.worker(host)
    assert (pending["concurrency"], pending["concurrency_source"]) == (4, "operator")
    assert pending["desired_version"] > stopped["desired_version"]
    assert pending["state"] == "stopped"
    assert pending["applied_concurrency"] == 2  # what it last reported; it is not running

    # Work queued meanwhile waits for it.
    ids = [admin_api.submit(job_recorder.command(1.5)) for _ in range(8)]

    # Back with a different flag: the central value wins...
    second = start_worker(host, concurrency=3)
    view = admin_api.wait_applied(host, 4, pid=second.pid)
    assert (view["concurrency"], view["flag_concurrency"]) == (4, 3)
    assert view["concurrency_source"] == "operator"
    assert read_state(edgefleet_home, host)["concurrency"] == 4

    # ...and is what it really runs: 4 at once, not its flag's 3.
    admin_api.wait_for_jobs(ids)
    runs = job_recorder.runs()
    assert sorted(r.job for r in runs) == sorted(ids)
    assert {r.ppid for r in runs} == {second.pid}
    assert max_overlap(runs) == 4

    # Across another restart, this time after a crash (SIGKILL), with yet another flag.
    second.kill()
    third = start_worker(host, concurrency=7)
    view = admin_api.wait_applied(host, 4, pid=third.pid)
    assert (view["concurrency"], view["flag_concurrency"]) == (4, 7)

    # --reset hands control back to the flag, at runtime, without restart.
    _set_concurrency(cli, host, "--reset")
    view = admin_api.wait_applied(host, 7, pid=third.pid)
    assert (view["concurrency"], view["concurrency_source"]) == (7, "flag")
    assert third.alive()

    # From now on the flag rules, also across restarts.
    assert third.stop() == 0
    fourth = start_worker(host, concurrency=2)
    view = admin_api.wait_applied(host, 2, pid=fourth.pid)
    assert (view["concurrency"], view["concurrency_source"]) == (2, "flag")


def test_an_expiring_override_ends_by_itself_and_the_worker_adopts_its_flag(
    server, admin_api, start_worker, cli, edgefleet_home
):
    host = "edge-expiring"
    worker = start_worker(host, concurrency=2)
    _set_concurrency(cli, host, "-c", "5", "--for", "3s")

    # No restart and no other request: the server ends it, the worker hears of it at once.
    def back_on_its_flag(view) -> bool:
        return (
            view["concurrency_source"] == "flag"
            and view["applied_concurrency"] == 2
            and view["applied_version"] == view["desired_version"]
        )

    view = admin_api.wait_for_worker(host, back_on_its_flag, message="back on its flag")
    assert (view["pid"], view["concurrency_until"]) == (worker.pid, None)
    assert worker.alive()
    log = worker.log_text()
    assert "from 2 to 5 by remote request (operator)" in log
    # the worker hands back at the end by itself, or hears of it from the server first
    assert re.search(r"from 5 to 2 (by remote request|as the operator's value ended) \(flag\)", log)
    assert read_state(edgefleet_home, host)["concurrency_until"] is None

    # The server's sweep ends it too (the worker may have handed back by itself first).
    def expiry_audited() -> tuple[list, list] | None:
        entries = admin_api.call("GET", "/audit", params={"edge_hostname": host})
        expired = [e for e in entries if e["actor"] == "server"]
        return (entries, expired) if expired else None

    entries, expired = wait_until(expiry_audited, message="the expiry audited")
    (until,) = [e["new"] for e in entries if e["field"] == "concurrency_until" and e["new"]]
    assert {(e["field"], e["old"], e["new"], e["comment"]) for e in expired} == {
        ("concurrency", 5, 2, "override expired"),
        ("concurrency_source", "operator", "flag", "override expired"),
        ("concurrency_until", until, None, "override expired"),
    }
    assert entries[0] == expired[0]  # the last word on this worker
