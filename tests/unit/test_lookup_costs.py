"""Questions about one job or a few workers cost what they ask about, not the fleet: a job's
detail reads only the workers that could run it, and ``--wait`` asks the server only about
the workers its change targeted (counted: rows loaded, requests made)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import event, insert

from edgefleet.cli import api, control
from edgefleet.cli.api import AdminClient
from edgefleet.cli.main import app as cli_app
from edgefleet.contract import JobSubmit, Registration
from edgefleet.db.models import Worker
from edgefleet.db.types import utcnow
from edgefleet.server.services import dispatch, jobs, workers
from edgefleet.settings import Settings

OFFLINE = 5.0
#: Workers that have nothing to do with the job asked about.
CROWD = 300


def register(db, hostname: str, queues: list[str]) -> str:
    instance = uuid.uuid4().hex
    reg = Registration(instance_id=instance, concurrency=2, queues=queues, heartbeat_interval=1)
    workers.register(db, hostname, reg, OFFLINE)
    return instance


@pytest.fixture
def crowded(session_factory):
    """A fleet of CROWD live workers on queue 'default', a long-gone one on 'gpu' and two
    live ones on 'gpu' (one in maintenance)."""
    now = utcnow()
    rows = [
        {
            "hostname": f"crowd-{n:04d}",
            "reported_state": "idle",
            "labels": {},
            "flag_concurrency": 4,
            "flag_queues": ["default"],
            "heartbeat_interval": 1.0,
            "sysinfo": {},
            "first_online": now,
            "last_heartbeat": now,
        }
        for n in range(CROWD)
    ]
    gone = {**rows[0], "hostname": "gone-gpu", "flag_queues": ["gpu"]}
    gone["last_heartbeat"] = now - timedelta(hours=1)
    with session_factory.begin() as session:
        session.execute(insert(Worker), [*rows, gone])
    register(session_factory, "gpu-1", ["gpu", "default"])
    register(session_factory, "gpu-2", ["gpuA", "gpu"])
    with session_factory.begin() as session:
        session.get(Worker, "gpu-2").maintenance_requested = True
    return session_factory


@pytest.fixture
def loaded(session_factory):
    """Hostnames of the worker rows the ORM loads from here on."""
    seen: list[str] = []

    def on_load(worker, context) -> None:
        seen.append(worker.hostname)

    event.listen(Worker, "load", on_load)
    yield seen
    event.remove(Worker, "load", on_load)


def test_a_jobs_detail_reads_only_the_workers_that_could_run_it(crowded, loaded):
    db = crowded
    gpu = jobs.submit(db, JobSubmit(command=["true"], queue="gpu", slots=3))
    detail = jobs.get_job(db, gpu, OFFLINE)
    assert detail.waiting_reason == (
        "needs 3 slots, but the largest live worker serving queue 'gpu' offers 2"
    )
    assert sorted(loaded) == ["gpu-1", "gpu-2"]

    loaded.clear()
    other = jobs.submit(db, JobSubmit(command=["true"], queue="gpu"))
    instance = register(db, "runner", ["solo"])
    solo = jobs.submit(db, JobSubmit(command=["true"], queue="solo"))
    dispatch.claim(db, "runner", instance, 1, seq=1)
    loaded.clear()
    assert jobs.get_job(db, solo, OFFLINE).state == "running"
    assert jobs.get_job(db, other, OFFLINE).waiting_reason is None
    assert sorted(loaded) == ["gpu-1", "gpu-2"]  # none for the running job

    loaded.clear()
    page = jobs.list_jobs(db, None, 10, 0, OFFLINE)
    assert {view.id for view in page} == {gpu, other, solo}
    assert sorted(loaded) == ["gpu-1", "gpu-2"]


def test_no_live_worker_for_a_queue_is_still_reported(crowded, loaded):
    db = crowded
    job = jobs.submit(db, JobSubmit(command=["true"], queue="gpu_"))
    assert jobs.get_job(db, job, OFFLINE).waiting_reason == ("no live worker serves queue 'gpu_'")
    assert loaded == []  # not even gpu-2, whose 'gpuA' a LIKE wildcard '_' would match


def test_listing_workers_by_glob_or_selector_reads_only_those(crowded, loaded):
    """What ``--wait`` asks on each look."""
    db = crowded
    with db.begin() as session:
        session.get(Worker, "gpu-1").labels = {"zone": "north"}
    loaded.clear()
    listed = workers.list_workers(db, OFFLINE, workers.WorkerFilter(hostname="gpu-*"))
    assert [view.hostname for view in listed] == ["gpu-1", "gpu-2"]
    assert sorted(loaded) == ["gpu-1", "gpu-2"]
    loaded.clear()
    by_label = workers.WorkerFilter(selector={"zone": "north"})
    assert [view.hostname for view in workers.list_workers(db, OFFLINE, by_label)] == ["gpu-1"]
    assert loaded == ["gpu-1"]


# --- --wait -----------------------------------------------------------------------------


def scripted_server(acks_after: int):
    """A server whose change targets site-1 and site-2; each GET /workers answers both, and
    they acknowledge on the ``acks_after``-th look. Returns (transport, the GETs' params)."""
    looks: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":  # the change
            versions = {"site-1": 4, "site-2": 7}
            body = {"workers": sorted(versions), "changes": [], "versions": versions}
            return httpx.Response(200, json=body)
        looks.append(dict(request.url.params))
        acked = len(looks) >= acks_after
        rows = [
            {"hostname": "site-1", "state": "idle", "applied_version": 4 if acked else 3},
            {"hostname": "site-2", "state": "idle", "applied_version": 7 if acked else 6},
        ]
        return httpx.Response(200, json=rows)

    return httpx.MockTransport(handler), looks


@pytest.mark.parametrize(
    ("args", "query"),
    [
        (["-H", "site-*"], {"edge_hostname": "site-*"}),
        (["--selector", "zone=north,rack=r1"], {"selector": "zone=north,rack=r1"}),
        (["--all"], {}),
    ],
)
def test_wait_asks_only_about_the_targeted_workers(monkeypatch, args, query):
    transport, looks = scripted_server(acks_after=2)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_operator")
    monkeypatch.setenv("EDGEFLEET_API_URL", "http://edgefleet.test")
    monkeypatch.setattr(
        api, "AdminClient", lambda settings: AdminClient(settings, transport=transport)
    )
    command = ["set-worker-concurrency", *args, "-c", "3", "--wait", "-o", "json"]
    result = CliRunner().invoke(cli_app, command)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["not_acknowledged"] == []
    assert looks == [query] * 2


def test_wait_backs_off_between_looks(monkeypatch):
    transport, looks = scripted_server(acks_after=8)
    client = AdminClient(
        Settings(api_url="http://edgefleet.test", token="efo_x"), transport=transport
    )
    pauses: list[float] = []
    versions = {"site-1": 4, "site-2": 7}
    pending, skipped = control.wait_for_acks(client, versions, 60, {"all": True}, pauses.append)
    assert (pending, skipped, len(looks)) == ([], [], 8)
    assert pauses[0] == control.FIRST_POLL and pauses[-1] == control.MAX_POLL
    assert pauses == sorted(pauses)
