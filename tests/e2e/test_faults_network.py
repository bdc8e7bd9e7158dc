"""Fault: the link between worker and server flaps, crawls, stalls or is cut.

The workers talk to the server through a TCP proxy that the tests break on purpose. Short
faults lose and duplicate nothing: fetches, results and log chunks are retried and the
server takes each once. A cut longer than the offline timeout makes the server re-queue the
worker's job; when the link returns, the stale run is stopped and its late result refused
(noted in the history), so the job is recorded once, from the attempt the server counts on.
"""

from __future__ import annotations

import random
import shlex
import threading
import time

import pytest
from jobs_support import (  # noqa: F401 - fixtures
    exactly_once,
    jobs_fixture,
    proxy_fixture,
    python_job,
    spool_files,
)

from support import wait_until

pytestmark = pytest.mark.same_on_every_backend

CHATTY = (
    "import sys, time\n"
    "for i in range(20):\n"
    "    print('line', i, flush=True)\n"
    "    time.sleep(0.05)\n"
)
CHATTY_OUTPUT = "".join(f"line {i}\n" for i in range(20))


class Flapper(threading.Thread):
    """Breaks the link again and again: resets, and short cuts (shorter than the offline
    timeout), until stopped."""

    def __init__(self, proxy, seed: int = 7) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.faults = 0

    def run(self) -> None:
        while not self.stopping.wait(self.random.uniform(0.4, 1.2)):
            if self.random.random() < 0.3:
                self.proxy.cut()
                self.stopping.wait(self.random.uniform(0.2, 1.0))
                self.proxy.heal()
            else:
                self.proxy.drop_connections()
            self.faults += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.proxy.heal()


def _through(proxy) -> tuple[str, ...]:
    return ("--api-url", proxy.url, "--poll-interval", "0.5")


def test_a_flapping_link_loses_and_duplicates_nothing(
    proxy, start_worker, jobs, job_recorder, edgefleet_home
):
    workers = [start_worker(f"flaky-{n}", 3, extra_args=_through(proxy)) for n in (1, 2)]
    flapper = Flapper(proxy)
    flapper.start()
    try:
        ids = [jobs.submit(job_recorder.command(random.uniform(0.3, 1.5))) for _ in range(30)]
        chatty = [jobs.submit(python_job(CHATTY)) for _ in range(4)]
        wait_until(
            lambda: flapper.faults >= 8 and len(job_recorder.finished()) >= 15,
            timeout=120,
            message="half the jobs done under faults",
        )
    finally:
        flapper.stop()
    views = jobs.wait_finished(ids + chatty, timeout=120)
    exactly_once(job_recorder, {job_id: views[job_id] for job_id in ids})
    for job_id in chatty:
        assert views[job_id]["state"] == "success"
        assert jobs.log(job_id) == CHATTY_OUTPUT
    for job_id in ids + chatty:
        assert jobs.events(job_id).count("succeeded") == 1
        assert "lost" not in jobs.events(job_id)
    for worker in workers:
        assert worker.alive()
        wait_until(lambda w=worker: not spool_files(edgefleet_home, w.hostname), timeout=60)


def test_a_slow_link_loses_and_duplicates_nothing(proxy, start_worker, jobs, job_recorder):
    proxy.delay(0.15)
    start_worker("slow-edge", 4, extra_args=_through(proxy))
    ids = [jobs.submit(job_recorder.command(0.3)) for _ in range(8)]
    chatty = jobs.submit(python_job(CHATTY))
    views = jobs.wait_finished([*ids, chatty], timeout=120)
    exactly_once(job_recorder, {job_id: views[job_id] for job_id in ids})
    assert jobs.log(chatty) == CHATTY_OUTPUT


def test_a_stalled_link_shorter_than_the_offline_timeout_changes_nothing(
    proxy, start_worker, jobs, job_recorder
):
    start_worker("stalled-edge", 3, extra_args=_through(proxy))
    ids = [jobs.submit(job_recorder.command(2.0)) for _ in range(3)]
    wait_until(lambda: len(job_recorder.running()) == 3, message="jobs running")
    proxy.pause()  # every byte held, connections left open: requests hang
    wait_until(lambda: len(job_recorder.finished()) == 3, timeout=30, message="jobs done")
    time.sleep(1.0)  # the results are now stuck in the stalled link (nothing to poll for)
    proxy.resume()
    views = jobs.wait_finished(ids, timeout=60)
    exactly_once(job_recorder, views)
    assert all(jobs.events(j) == ["submitted", "started", "succeeded"] for j in ids)


def _by_attempt(recorder, long: float, short: float) -> list[str]:
    """A recorded job that runs ``long`` seconds as attempt 1 and ``short`` after."""
    first = shlex.join(recorder.command(long))
    later = shlex.join(recorder.command(short))
    return ["sh", "-c", f'if [ "$EDGEFLEET_JOB_ATTEMPT" = 1 ]; then {first}; else {later}; fi']


def test_a_cut_longer_than_the_offline_timeout_stops_the_stale_run(
    proxy, start_worker, jobs, job_recorder, admin_api
):
    far = start_worker("far-edge", 1, extra_args=_through(proxy))
    job = jobs.submit(_by_attempt(job_recorder, 120.0, 0.5), retries=1)
    (stale,) = wait_until(job_recorder.running, message="attempt 1 running on far-edge")
    assert (stale.worker, stale.attempt) == ("far-edge", 1)
    start_worker("near-edge", 1)  # direct link; takes the job once it is re-queued

    proxy.cut()
    lost = jobs.wait_event(job, "lost", timeout=60)
    assert "far-edge went offline" in lost["reason"]
    view = jobs.wait_state(job, "success", timeout=60)
    assert (view["attempt"], view["worker"]) == (2, "near-edge")

    proxy.heal()  # far-edge reconnects, still running attempt 1: it is told to stop it
    refused = jobs.wait_event(job, "late_result_refused", timeout=60)
    assert (refused["attempt"], refused["worker"]) == (1, "far-edge")
    wait_until(lambda: not _alive(stale.pid), timeout=30, message="the stale run killed")
    assert "no longer current" in far.log_text()
    after = jobs.get(job)
    assert (after["state"], after["attempt"], after["worker"]) == ("success", 2, "near-edge")
    events = jobs.events(job)
    assert events.count("succeeded") == 1
    assert events[:5] == ["submitted", "started", "lost", "started", "succeeded"]
    assert admin_api.worker("far-edge")["state"] in ("idle", "running")
    assert [r.attempt for r in job_recorder.finished()] == [2]


def test_a_late_result_after_a_long_cut_is_refused_not_recorded(
    proxy, start_worker, jobs, job_recorder
):
    far = start_worker("late-edge", 1, extra_args=_through(proxy))
    job = jobs.submit(_by_attempt(job_recorder, 3.0, 3.0), retries=1)
    wait_until(job_recorder.running, message="attempt 1 running")
    proxy.cut()  # attempt 1 ends during the cut; its result waits in late-edge's spool
    start_worker("stand-in-edge", 1)

    jobs.wait_event(job, "lost", timeout=60)
    wait_until(
        lambda: (
            [r.attempt for r in job_recorder.finished()] == [1]
            and any(r.attempt == 2 for r in job_recorder.runs())
        ),
        message="attempt 1 ended, attempt 2 started",
    )
    proxy.heal()
    refused = jobs.wait_event(job, "late_result_refused", timeout=60)
    assert (refused["attempt"], refused["worker"], refused["exit_code"]) == (1, "late-edge", 0)
    view = jobs.wait_state(job, "success", timeout=60)
    assert (view["attempt"], view["worker"]) == (2, "stand-in-edge")
    assert jobs.events(job).count("succeeded") == 1
    assert "refused" in far.log_text()
    runs = sorted((r.attempt, r.worker) for r in job_recorder.finished())
    assert runs == [(1, "late-edge"), (2, "stand-in-edge")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
