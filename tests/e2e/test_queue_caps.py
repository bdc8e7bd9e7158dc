"""End-to-end: a fleet-wide queue cap holds with real workers (on PostgreSQL also across
two server replicas whose workers race for the queue), and raising or lifting it lets more
of the queue's jobs run at once.

Checked from what the jobs record themselves: the recording jobs' own start and end times
while a backlog drains, and gated jobs that note their start in a folder and then hold
their place until the test opens the gate (so "started" is "running" until then, and a
count read at any instant is a count of jobs running together). No timing claims.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from support import PG_URL_ENV, AdminApi, free_port, max_overlap, parse_time, wait_until

GATED_SOURCE = """\
import os, sys, time
folder, gate = sys.argv[1], sys.argv[2]
open(os.path.join(folder, os.environ["EDGEFLEET_JOB_ID"]), "w").close()
while not os.path.exists(gate):
    time.sleep(0.02)
"""


class Gate:
    """Jobs that mark their start in ``folder`` and run until ``open`` is called."""

    def __init__(self, root: Path) -> None:
        self.folder, self.gate = root / "started", root / "gate"
        self.folder.mkdir()

    def command(self) -> list[str]:
        return [sys.executable, "-I", "-c", GATED_SOURCE, str(self.folder), str(self.gate)]

    def started(self) -> int:
        return len(list(self.folder.iterdir()))

    def open(self) -> None:
        self.gate.touch()


def test_a_queue_cap_holds_across_workers_and_moves_at_runtime(
    server, admin_api, start_worker, cli, cli_json, job_recorder, tmp_path
):
    for hostname in ("cap-a", "cap-b"):
        start_worker(hostname, concurrency=4, queues="gpu,default")
    cli("set-queue-concurrency", "-q", "gpu", "-c", "2", check=True)

    # A backlog drains through 8 free slots, never more than 2 gpu jobs at once, while the
    # default queue's jobs start beside them.
    # One batch, so the backlog is all there before the first job ends.
    backlog = [{"command": job_recorder.command(0.2), "queue": "gpu"} for _ in range(6)]
    backlog += [{"command": job_recorder.command(0.2), "queue": "default"} for _ in range(2)]
    ids = admin_api.call("POST", "/jobs/batch", expect=201, json={"jobs": backlog})["ids"]
    gpu, other = ids[:6], ids[6:]
    views = admin_api.wait_for_jobs(gpu + other, timeout=60)
    assert all(view["state"] == "success" for view in views.values()), views
    runs = job_recorder.finished()
    assert sorted(r.job for r in runs) == sorted(gpu + other)
    assert max_overlap([r for r in runs if r.job in gpu]) <= 2
    last_gpu_start = max(parse_time(views[job]["started_at"]) for job in gpu)
    assert all(parse_time(views[job]["started_at"]) < last_gpu_start for job in other)

    # Gated jobs: 2 start and hold; raised to 5, three more start; lifted, all 8 run.
    gate = Gate(tmp_path)
    held = [admin_api.submit(gate.command(), queue="gpu") for _ in range(8)]
    wait_until(lambda: gate.started() == 2, timeout=30, message="2 gated gpu jobs running")
    (queue,) = [q for q in cli_json("list-queues") if q["queue"] == "gpu"]
    assert (queue["cap"], queue["running"], queue["queued"]) == (2, 2, 6)
    assert queue["oldest_queued_age_seconds"] >= 0 and queue["oldest_queued_at"]
    assert gate.started() == 2  # read after the listing: still no third
    admin_api.call("PUT", "/queues/gpu", json={"concurrency": 5})
    wait_until(lambda: gate.started() == 5, timeout=30, message="5 gated gpu jobs running")
    assert gate.started() == 5
    admin_api.call("PUT", "/queues/gpu", json={"reset": True})
    wait_until(lambda: gate.started() == 8, timeout=30, message="all 8 gated jobs running")
    gate.open()
    views = admin_api.wait_for_jobs(held, timeout=60)
    assert all(view["state"] == "success" for view in views.values()), views

    audit = admin_api.call("GET", "/audit", params={"limit": 5})
    caps = [(e["target"], e["field"], e["old"], e["new"]) for e in reversed(audit)]
    assert caps[-3:] == [
        ("queue:gpu", "queue_concurrency", None, 2),
        ("queue:gpu", "queue_concurrency", 2, 5),
        ("queue:gpu", "queue_concurrency", 5, None),
    ]


@pytest.mark.skipif(
    not os.environ.get(PG_URL_ENV),
    reason=f"two replicas share a PostgreSQL database; set {PG_URL_ENV} to run",
)
def test_workers_of_two_replicas_racing_for_a_capped_queue_never_pass_the_cap(
    edgefleet_env, server_factory, start_worker, job_recorder
):
    server_factory()
    env_b = {**edgefleet_env, "EDGEFLEET_API_URL": f"http://127.0.0.1:{free_port()}"}
    server_factory(migrate=False, env=env_b)
    workers = [
        start_worker(f"race-{name}-{i}", concurrency=4, queues="gpu", env=env, wait=False)
        for name, env in (("a", edgefleet_env), ("b", env_b))
        for i in (1, 2)
    ]
    with AdminApi(edgefleet_env["EDGEFLEET_API_URL"], edgefleet_env["EDGEFLEET_SECRET"]) as api:
        for worker in workers:
            api.wait_for_worker(
                worker.hostname,
                lambda view, pid=worker.pid: view["pid"] == pid and view["applied_concurrency"],
                timeout=60,
            )
        api.call("PUT", "/queues/gpu", json={"concurrency": 3})
        # 16 free slots on four workers, two per replica, for 18 jobs: every freed place is
        # raced for.
        ids = [api.submit(job_recorder.command(0.2), queue="gpu") for _ in range(18)]
        views = api.wait_for_jobs(ids, timeout=120)
    assert all(view["state"] == "success" for view in views.values()), views
    runs = job_recorder.finished()
    assert sorted(r.job for r in runs) == sorted(ids)
    assert max_overlap(runs) <= 3
    assert len({r.worker for r in runs}) > 1
