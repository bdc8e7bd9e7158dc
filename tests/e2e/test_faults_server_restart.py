"""Fault: the server goes away (stopped, restarted) while workers run jobs.

Workers keep running their jobs, keep results and log chunks in their spool on disk, and
deliver them when the server is back, also after a worker restart in between. No result is
lost, none is recorded twice, and a server that was down longer than the offline timeout
does not mistake its own absence for its workers' (their jobs are not re-queued).
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from jobs_support import exactly_once, jobs_fixture, python_job, spool_files  # noqa: F401

from support import wait_until

TICKS = "import time\nfor i in range(6):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"
TICKS_OUTPUT = "".join(f"tick {i}\n" for i in range(6))


def patient(env: dict[str, str]) -> dict[str, str]:
    """A restarted server that gives a worker process started after it a minute to come
    back: these tests are about the spool, not about how soon silence counts as offline
    (a loaded machine may take the 10 s of the suite's timeout to start a worker)."""
    return {**env, "EDGEFLEET_WORKER_OFFLINE_TIMEOUT": "60"}


def test_jobs_finish_through_a_server_outage_longer_than_the_offline_timeout(
    server, server_factory, start_worker, jobs, job_recorder, edgefleet_home
):
    workers = [start_worker(f"steady-{n}", concurrency=3) for n in (1, 2)]
    ids = [jobs.submit(job_recorder.command(3.0)) for _ in range(4)]
    printing = [jobs.submit(python_job(TICKS)) for _ in range(2)]
    wait_until(lambda: len(job_recorder.running()) == 4, message="4 recorded jobs running")

    server.stop()
    stopped_at = time.monotonic()

    # The jobs run to their end with the server away; their results wait in the spools.
    def results_spooled() -> int:
        files = [f for w in workers for f in spool_files(edgefleet_home, w.hostname)]
        return sum(1 for f in files if "-result-" in f.name)

    wait_until(lambda: results_spooled() == 6, timeout=60, message="all 6 results spooled")
    assert len(job_recorder.finished()) == 4
    # Stay away longer than the offline timeout (10 s).
    wait_until(lambda: time.monotonic() - stopped_at > 12, timeout=30)

    server_factory(migrate=False)
    views = jobs.wait_finished(ids + printing, timeout=90)

    exactly_once(job_recorder, {job_id: views[job_id] for job_id in ids})
    for job_id in ids + printing:
        assert jobs.events(job_id) == ["submitted", "started", "succeeded"], job_id
        assert views[job_id]["attempt"] == 1
    for job_id in printing:
        assert jobs.log(job_id) == TICKS_OUTPUT  # every chunk, once, in order
    for worker in workers:
        assert worker.alive()
        wait_until(lambda w=worker: spool_files(edgefleet_home, w.hostname) == [], timeout=30)


@pytest.mark.same_on_every_backend  # the worker's spool on disk
def test_a_worker_restarted_while_the_server_is_down_delivers_its_spool(
    server, server_factory, start_worker, jobs, job_recorder, edgefleet_home, edgefleet_env
):
    worker = start_worker("patient-edge", concurrency=2)
    ids = [jobs.submit(job_recorder.command(2.0)) for _ in range(1)]
    printing = jobs.submit(python_job(TICKS))
    wait_until(lambda: job_recorder.running(), message="job running")

    server.stop()
    wait_until(lambda: job_recorder.finished(), timeout=60, message="job done")
    wait_until(
        lambda: (
            len([f for f in spool_files(edgefleet_home, "patient-edge") if "-result-" in f.name])
            == 2
        ),
        timeout=30,
        message="both results spooled",
    )
    # A graceful stop cannot deliver either: it leaves the spool for the next start.
    assert worker.stop(timeout=60) == 0
    assert "stay in the spool" in worker.log_text()
    assert spool_files(edgefleet_home, "patient-edge")

    server_factory(migrate=False, env=patient(edgefleet_env))
    again = start_worker("patient-edge", concurrency=2)
    views = jobs.wait_finished([*ids, printing], timeout=60)
    exactly_once(job_recorder, {job_id: views[job_id] for job_id in ids})
    assert jobs.log(printing) == TICKS_OUTPUT
    assert views[printing]["state"] == "success"
    for job_id in [*ids, printing]:
        assert jobs.events(job_id) == ["submitted", "started", "succeeded"]
    assert spool_files(edgefleet_home, "patient-edge") == []
    assert "previous process left in the spool" in again.log_text()


@pytest.mark.same_on_every_backend  # the worker's spool on disk
def test_a_worker_crashed_while_the_server_is_down_delivers_its_spool_after_restart(
    server, server_factory, start_worker, jobs, job_recorder, edgefleet_home, edgefleet_env
):
    worker = start_worker("fragile-edge", concurrency=2)
    ids = [jobs.submit(job_recorder.command(1.0)) for _ in range(2)]
    wait_until(lambda: len(job_recorder.running()) == 2, message="jobs running")
    server.stop()
    wait_until(lambda: len(job_recorder.finished()) == 2, timeout=60, message="jobs done")
    wait_until(
        lambda: len(spool_files(edgefleet_home, "fragile-edge")) >= 2,
        timeout=30,
        message="results spooled",
    )
    worker.send(signal.SIGKILL)
    worker.wait(10)

    server_factory(migrate=False, env=patient(edgefleet_env))
    start_worker("fragile-edge", concurrency=2)
    views = jobs.wait_finished(ids, timeout=60)
    exactly_once(job_recorder, views)
    assert all(jobs.events(j) == ["submitted", "started", "succeeded"] for j in ids)


@pytest.mark.same_on_every_backend  # the worker's own stop
def test_a_sigterm_with_the_server_gone_stops_once_the_spool_is_safe(
    server, start_worker, jobs, job_recorder, edgefleet_home
):
    # A free slot keeps the worker asking for work, so a fetch is in flight when the
    # server goes: a stop must not sit out the grace period trying to settle it.
    worker = start_worker(
        "stranded-edge",
        concurrency=2,
        extra_args=("--grace-period", "600", "--report-timeout", "1"),
    )
    jobs.submit(job_recorder.command(0.5))
    wait_until(job_recorder.running, message="job running")
    server.stop()
    wait_until(job_recorder.finished, timeout=30, message="job done")
    wait_until(
        lambda: any("-result-" in f.name for f in spool_files(edgefleet_home, "stranded-edge")),
        timeout=30,
        message="result spooled",
    )
    wait_until(lambda: re.search(r"fetch \d+ failed", worker.log_text()), message="a fetch lost")

    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0  # well inside the 600 s grace period
    assert "stay in the spool" in worker.log_text()
    assert any("-result-" in f.name for f in spool_files(edgefleet_home, "stranded-edge"))
