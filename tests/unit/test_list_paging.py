"""Job and audit lists: newest first under a limit, paged back with ``before``, and the audit
log purged past its retention (services, the in-process API, and the CLI against a scripted
server)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from edgefleet.cli import api
from edgefleet.cli.api import AdminClient
from edgefleet.cli.main import app as cli_app
from edgefleet.contract import ControlRequest, JobSubmit, Registration, SetConcurrency
from edgefleet.db.models import AuditEntry
from edgefleet.db.types import utcnow
from edgefleet.server.services import control, jobs, sweep, workers
from edgefleet.server.sweeper import Sweeper
from support import admin_token, auth_header

OFFLINE = 5.0


def submit(db, count: int) -> list[int]:
    return [jobs.submit(db, JobSubmit(command=["true"]), "tester") for _ in range(count)]


def change_concurrency(db, hostname: str, values: range) -> None:
    """One audit entry per value."""
    for value in values:
        request = SetConcurrency(edge_hostname=hostname, concurrency=value)
        control.change_workers(db, ControlRequest.from_action("set-concurrency", request), "op")


def register(db, hostname: str) -> None:
    reg = Registration(
        instance_id=uuid.uuid4().hex, concurrency=1, queues=["default"], heartbeat_interval=1
    )
    workers.register(db, hostname, reg, OFFLINE)


def test_jobs_are_listed_newest_first_and_paged_back_with_before(session_factory):
    db = session_factory
    ids = submit(db, 5)
    page = [view.id for view in jobs.list_jobs(db, None, 2, 0, OFFLINE)]
    assert page == ids[:-3:-1]  # the two newest
    older = [view.id for view in jobs.list_jobs(db, None, 2, 0, OFFLINE, before=page[-1])]
    assert older == [ids[2], ids[1]]
    rest = [view.id for view in jobs.list_jobs(db, None, 2, 0, OFFLINE, before=older[-1])]
    assert rest == [ids[0]]


def test_audit_is_listed_newest_first_and_paged_back_with_before(session_factory):
    db = session_factory
    register(db, "w1")
    register(db, "w2")
    change_concurrency(db, "w1", range(2, 6))  # the first change also sets its source
    change_concurrency(db, "w2", range(2, 3))
    newest = control.list_audit(db, None, None, 3)
    assert [(e.target, e.field, e.new) for e in newest] == [
        ("w2", "concurrency_source", "operator"),
        ("w2", "concurrency", 2),
        ("w1", "concurrency", 5),
    ]
    older = control.list_audit(db, "w1", None, 2, before=newest[-1].id)
    assert [e.new for e in older] == [4, 3]


def test_the_api_takes_before_and_refuses_a_bad_one(app_client, app_settings):
    admin = auth_header(admin_token(app_settings.secret))
    ids = [
        app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin).json()["id"]
        for _ in range(3)
    ]
    listed = app_client.get("/api/v1/jobs", params={"limit": 2}, headers=admin).json()
    assert [job["id"] for job in listed] == [ids[2], ids[1]]
    params = {"limit": 2, "before": ids[1]}
    older = app_client.get("/api/v1/jobs", params=params, headers=admin).json()
    assert [job["id"] for job in older] == [ids[0]]
    for path in ("/api/v1/jobs", "/api/v1/audit"):
        response = app_client.get(path, params={"before": 0}, headers=admin)
        assert response.status_code == 422 and "before" in response.text
    assert app_client.get("/api/v1/audit", params={"before": 5}, headers=admin).json() == []


def test_audit_entries_past_their_retention_are_purged_oldest_first(session_factory):
    db = session_factory
    register(db, "w1")
    change_concurrency(db, "w1", range(2, 7))
    with db() as session:
        ids = sorted(session.scalars(select(AuditEntry.id)))
    with db.begin() as session:  # the three oldest were written two days ago
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.id.in_(ids[:3]))
            .values(at=utcnow() - timedelta(days=2))
        )
    assert sweep.purge_audit(db, 86400, utcnow()) == 3
    assert sweep.purge_audit(db, 86400, utcnow()) == 0
    assert [e.id for e in control.list_audit(db, None, None, 100)] == ids[:2:-1]


@pytest.fixture
def scripted(monkeypatch):
    """The CLI against a scripted server that answers every list with three rows; returns
    the query parameters of each request."""
    for key in ("EDGEFLEET_API_URL", "EDGEFLEET_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EDGEFLEET_TOKEN", "efo_viewer")
    monkeypatch.setenv("EDGEFLEET_API_URL", "http://edgefleet.test")
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, json=[_row(9), _row(8), _row(7)])

    monkeypatch.setattr(
        api,
        "AdminClient",
        lambda settings: AdminClient(settings, transport=httpx.MockTransport(handler)),
    )
    return asked


def _row(row_id: int) -> dict:
    return {"id": row_id, "state": "success", "queue": "default", "command": ["true"]}


@pytest.mark.parametrize(
    ("args", "path_args"),
    [
        (["jobs", "list", "--state", "success"], "jobs list --state success"),
        (["audit", "-H", "site-*"], "audit --edge-hostname 'site-*'"),
    ],
)
def test_the_cli_pages_with_before_and_says_how(scripted, args, path_args):
    result = CliRunner().invoke(cli_app, [*args, "--limit", "3", "--before", "10", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert scripted[-1]["before"] == "10" and scripted[-1]["limit"] == "3"
    assert result.stderr == f"more: edgefleet {path_args} --limit 3 --before 7\n"
    result = CliRunner().invoke(cli_app, [*args, "--limit", "4"])  # not a full page
    assert "before" not in scripted[-1] and result.stderr == ""
    bad = CliRunner().invoke(cli_app, [*args, "--before", "0"])
    assert bad.exit_code == 2 and "--before" in bad.stderr


@pytest.fixture
def app_settings(app_settings):
    return app_settings.model_copy(update={"audit_retention": 3600.0})


def test_the_sweeper_purges_the_audit_log_by_its_setting(app_client, app):
    context = app.state.context
    register(context.db, "w1")
    change_concurrency(context.db, "w1", range(2, 4))
    with context.db.begin() as session:
        session.execute(update(AuditEntry).values(at=utcnow() - timedelta(hours=2)))
    change_concurrency(context.db, "w1", range(4, 5))
    Sweeper(context).tick()
    assert [e.new for e in control.list_audit(context.db, None, None, 100)] == [4]
