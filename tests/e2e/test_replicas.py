"""Two server replicas on one PostgreSQL database, with workers spread across them.

Replicas share nothing but the database: each holds the long-polls of its own workers and
learns about changes made on the other through PostgreSQL ``LISTEN/NOTIFY``. These tests run
real processes: two ``edgefleet server`` on different ports (same database, same secret) and
workers pointed at one replica each (``test_replicas_failover.py`` gives a worker both).

Proving that the wake-up crossed replicas needs every other delivery path to be slower than
the test's (generous) bound:

- workers heartbeat every 30 s, and each acknowledgement restarts that timer;
- long-polls stay open up to 30 s, and each answer opens a fresh one;
- servers re-read the database only every 60 s while holding a long-poll
  (``EDGEFLEET_WATCH_RECHECK``), and sweep (which announces jobs left waiting again) only
  every 60 s (``EDGEFLEET_SWEEP_INTERVAL``), instead of every 5 s.

Before a cross-replica change, the worker acknowledges a change made on its own replica, so
both of its windows start afresh. Cross-replica changes and jobs go through the CLI, whose
start-up (a second or so) lets the worker open its next long-poll first: a change landing
before that would reach it in the answer to its fetch instead. Whatever then arrives within
``DELIVERY_BOUND`` (15 s) came through a wake-up. The bound is about correctness, not speed:
it is far above what delivery takes and says nothing about latency (benchmarks measure that).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jobs_support import exactly_once, spool_files

from support import (
    PG_URL_ENV,
    AdminApi,
    Cli,
    JobRecorder,
    JobRun,
    ServerProcess,
    WorkerProcess,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_URL_ENV),
    reason="replicas share a PostgreSQL database and wake each other with LISTEN/NOTIFY; "
    f"set {PG_URL_ENV} to run",
)

HEARTBEAT = 30.0
#: How long a cross-replica change or job may take to arrive: generous for a loaded machine,
#: yet below the heartbeat, the long-poll and the re-check windows.
DELIVERY_BOUND = 15.0
JOBS = 60
JOB_SECONDS = 0.2
#: Workers per replica; ``a-2`` alone also serves the queue ``only-a``.
FLEET = {"a": ("a-1", "a-2"), "b": ("b-1", "b-2")}
ONLY_A = "only-a"


@dataclass
class Replica:
    """One ``edgefleet server`` of the pair, with the environment that points at it."""

    name: str
    server: ServerProcess
    env: dict[str, str]
    api: AdminApi


@dataclass
class Fleet:
    """Both replicas and the workers connected to each."""

    a: Replica
    b: Replica
    workers: dict[str, WorkerProcess]


@pytest.fixture
def replicas(
    edgefleet_env: dict[str, str], server_factory: Callable[..., ServerProcess]
) -> Iterator[tuple[Replica, Replica]]:
    """Replica ``a`` on ``EDGEFLEET_API_URL``, replica ``b`` on another port, one database."""
    edgefleet_env.update(
        # Workers heartbeat every 30 s: they must not look offline (jobs lost) in between.
        EDGEFLEET_WORKER_OFFLINE_TIMEOUT="120",
        # A held long-poll must not find the change by re-reading the database first.
        EDGEFLEET_WATCH_RECHECK="60",
        # Nor may a sweep announce a job left waiting again on the worker's own replica.
        EDGEFLEET_SWEEP_INTERVAL="60",
    )
    server_a = server_factory()
    env_b = {**edgefleet_env, "EDGEFLEET_API_URL": f"http://127.0.0.1:{free_port()}"}
    server_b = server_factory(migrate=False, env=env_b)
    secret = edgefleet_env["EDGEFLEET_SECRET"]
    with AdminApi(server_a.url, secret) as api_a, AdminApi(server_b.url, secret) as api_b:
        yield (
            Replica("a", server_a, edgefleet_env, api_a),
            Replica("b", server_b, env_b, api_b),
        )


@pytest.fixture
def fleet(replicas: tuple[Replica, Replica], start_worker: Callable[..., WorkerProcess]) -> Fleet:
    """Two workers on each replica, started together, each registered and acknowledged."""
    a, b = replicas
    workers = {}
    for replica in (a, b):
        for hostname in FLEET[replica.name]:
            queues = f"default,{ONLY_A}" if hostname == "a-2" else "default"
            workers[hostname] = start_worker(
                hostname,
                concurrency=4,
                queues=queues,
                heartbeat_interval=HEARTBEAT,
                env=replica.env,
                wait=False,
            )
    for worker in workers.values():
        wait_registered(a.api, worker)
    return Fleet(a, b, workers)


def wait_registered(api: AdminApi, worker: WorkerProcess) -> None:
    """Starting workers in parallel saves seconds; this is ``start_worker``'s wait."""

    def registered(view: dict[str, Any]) -> bool:
        assert worker.alive(), f"{worker!r} exited:\n{worker.log_tail()}"
        return (
            view["pid"] == worker.pid
            and view["applied_concurrency"] is not None
            and view["applied_version"] == view["desired_version"]
        )

    api.wait_for_worker(worker.hostname, registered, timeout=60, message=f"{worker!r} registered")


def refresh_windows(replica: Replica, hostname: str, concurrency: int) -> None:
    """Have ``hostname`` acknowledge a change made on its own replica: its heartbeat timer
    and its next long-poll then start in full, so only a wake-up can beat them."""
    response = replica.api.set_concurrency(hostname, concurrency)
    assert response.status_code == 200, response.text
    replica.api.wait_applied(hostname, concurrency, timeout=DELIVERY_BOUND)


def cross_replica_change(cli: Cli, replica: Replica, *args: str) -> dict[str, Any]:
    """Run a control command against ``replica`` and wait for the acknowledgement."""
    result = cli.json(*args, "--wait", "--timeout", str(DELIVERY_BOUND), env=replica.env)
    assert result["not_acknowledged"] == [], result
    assert result["not_online"] == [], result
    return result


def submit(cli: Cli, replica: Replica, command: list[str], queue: str) -> int:
    """Queue a job through ``replica`` with ``edgefleet submit``; returns its id."""
    return cli.json("submit", "-q", queue, "--", *command, env=replica.env)["id"]


def started(recorder: JobRecorder, job_id: int) -> JobRun | None:
    return next((run for run in recorder.runs() if run.job == job_id), None)


def overlap(first: list[JobRun], second: list[JobRun]) -> bool:
    """Whether a finished run of ``first`` and one of ``second`` were running at one time."""
    return any(x.start < y.end and y.start < x.end for x in first for y in second)


def test_two_replicas_share_jobs_and_control(fleet: Fleet, cli: Cli, job_recorder: JobRecorder):
    a, b = fleet.a, fleet.b

    # A job queued through B starts on a worker that only replica A can reach.
    refresh_windows(a, "a-2", 3)
    probe = submit(cli, b, job_recorder.command(seconds=0), queue=ONLY_A)
    run = wait_until(
        lambda: started(job_recorder, probe),
        timeout=DELIVERY_BOUND,
        message=f"job {probe} (queued on B) to start on a-2 (long-polling A)",
    )
    assert run.worker == "a-2"

    # Control changes made through B reach a-1, long-polling A, and are acknowledged.
    refresh_windows(a, "a-1", 2)
    cross_replica_change(cli, b, "set-worker-concurrency", "-H", "a-1", "-c", "3")
    assert a.api.worker("a-1")["applied_concurrency"] == 3
    cross_replica_change(
        cli, b, "remote-edge-worker-request-maintenance", "-H", "a-1", "-c", "via replica b"
    )
    view = a.api.wait_for_worker(
        "a-1", lambda v: v["state"] == "maintenance", timeout=DELIVERY_BOUND
    )
    assert view["maintenance_comment"] == "via replica b"
    cross_replica_change(cli, b, "remote-edge-worker-exit-maintenance", "-H", "a-1")
    a.api.wait_for_worker("a-1", lambda v: v["state"] == "idle", timeout=DELIVERY_BOUND)

    # Many short jobs queued through both replicas, taken by workers of both: each runs once.
    submitted = {a.name: [], b.name: []}
    for n in range(JOBS):
        replica = (a, b)[n % 2]
        submitted[replica.name].append(replica.api.submit(job_recorder.command(JOB_SECONDS)))
    ids = [probe, *submitted["a"], *submitted["b"]]
    views = a.api.wait_for_jobs(ids, timeout=120)
    exactly_once(job_recorder, views)

    runs = [r for r in job_recorder.finished() if r.job != probe]
    on_a = [r for r in runs if r.worker in FLEET["a"]]
    on_b = [r for r in runs if r.worker in FLEET["b"]]
    assert on_a and on_b, f"jobs ran only on {'a' if on_a else 'b'}'s workers"
    assert overlap(on_a, on_b), "the replicas never handed out work at the same time"
    crossed = {
        "a to b": {r.job for r in on_b} & set(submitted["a"]),
        "b to a": {r.job for r in on_a} & set(submitted["b"]),
    }
    assert all(crossed.values()), f"no job crossed replicas: {crossed}"
    assert all(worker.alive() for worker in fleet.workers.values())


def test_workers_of_a_stopped_replica_keep_their_jobs(
    fleet: Fleet,
    server_factory: Callable[..., ServerProcess],
    job_recorder: JobRecorder,
    edgefleet_home: Path,
):
    """A worker given one replica only cannot fail over: while its replica is away it
    finishes its jobs and keeps their results in its spool, and the other replica's workers
    go on with the queue."""
    a, b = fleet.a, fleet.b
    # More work than replica a's workers have slots for: b's workers must take some.
    ids = [b.api.submit(job_recorder.command(3.0)) for _ in range(16)]
    wait_until(
        lambda: any(r.worker in FLEET["b"] for r in job_recorder.running()),
        message="a job running on a worker of replica b",
    )

    b.server.stop()  # SIGTERM (uvicorn is told to quit at once half a second later)
    during = [a.api.submit(job_recorder.command(0.2)) for _ in range(8)]
    wait_until(
        lambda: not any(r.worker in FLEET["b"] for r in job_recorder.running()),
        message="the jobs of replica b's workers to end",
    )
    wait_until(
        lambda: any(spooled_results(edgefleet_home, host) for host in FLEET["b"]),
        message="results waiting in the spools of replica b's workers",
    )

    url = b.server.url
    assert server_factory(migrate=False, env=b.env).url == url, "replica b came back elsewhere"
    views = a.api.wait_for_jobs(ids + during, timeout=90)
    exactly_once(job_recorder, views)
    assert all(view["attempt"] == 1 for view in views.values())
    assert {view["worker"] for view in views.values()} & set(FLEET["b"])
    for hostname in FLEET["b"]:
        assert fleet.workers[hostname].alive()
        wait_until(
            lambda h=hostname: not spool_files(edgefleet_home, h),
            message=f"{hostname} spool emptied",
        )


def spooled_results(home: Path, hostname: str) -> list[Path]:
    return [f for f in spool_files(home, hostname) if "-result-" in f.name]
