"""End-to-end: the database commands, and the job life cycle through the CLI.

Real ``edgefleet`` processes on loopback, a real database and real subprocess jobs.
"""

from __future__ import annotations

import json
import sys

import pytest
from sqlalchemy import create_engine, inspect, text

from support import AdminApi, squash
from support.cli import describe

CORE_TABLES = {"edge_worker", "edge_job", "edge_job_log", "edge_audit", "alembic_version"}


def _schema(url: str) -> tuple[set[str], list[str]]:
    """The database's tables and the revisions recorded in ``alembic_version``."""
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        revisions: list[str] = []
        if "alembic_version" in tables:
            with engine.connect() as connection:
                query = text("SELECT version_num FROM alembic_version")
                revisions = list(connection.execute(query).scalars())
        return tables, revisions
    finally:
        engine.dispose()


def test_db_migrate_is_idempotent_and_keeps_data(cli, database_url, server_factory):
    unmigrated = cli("db", "check")
    assert unmigrated.returncode == 1, describe(unmigrated)
    assert "edgefleet db migrate" in squash(unmigrated.stderr)

    first = cli("db", "migrate", check=True)
    tables, revisions = _schema(database_url)
    assert tables >= CORE_TABLES
    assert len(revisions) == 1
    head = revisions[0]
    assert head in first.stdout

    # Migrating again, under a live server with data in the database, changes nothing.
    server = server_factory(migrate=False)
    with AdminApi(server.url, cli.env["EDGEFLEET_SECRET"]) as api:
        job_id = api.submit(["true"], queue="nobody-serves-this")
        second, checked = cli.run_all([["db", "migrate"], ["db", "check"]], check=True)
        assert "already" in second.stdout, describe(second)
        assert head in checked.stdout
        assert api.job(job_id)["command"] == ["true"]
    assert _schema(database_url) == (tables, [head])
    assert server.healthy()


def test_server_refuses_an_unmigrated_database(server_factory, database_url):
    server = server_factory(migrate=False, wait=False)
    assert server.wait(timeout=60) != 0, server.log_text()
    log = squash(server.log_text())
    assert "run `edgefleet db migrate`" in log, log
    assert "edge_worker" not in _schema(database_url)[0]  # refusing created nothing


def test_server_refuses_a_database_behind_the_code(cli, server_factory, schema_template):
    schema_template.apply(cli.env["EDGEFLEET_DB_URL"])  # `db migrate` is tested above
    cli("db", "downgrade", "base", check=True)
    server = server_factory(migrate=False, wait=False)
    assert server.wait(timeout=60) != 0, server.log_text()
    assert "edgefleet db migrate" in squash(server.log_text())


def _py(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


def test_submit_run_inspect_and_logs(cli, cli_json, server, admin_api, start_worker):
    start_worker("cli-edge", concurrency=2)

    ok, failing, missing, elsewhere = cli.run_all(
        [
            [
                "submit",
                "--output",
                "json",
                "--",
                *_py("import sys; print('to-stdout'); print('to-stderr', file=sys.stderr)"),
            ],
            ["submit", "--", *_py("import sys; print('failing now'); sys.exit(3)")],
            ["submit", "-o", "json", "--", "/nonexistent/edgefleet-no-such-command", "arg"],
            ["submit", "--queue", "not-served", "--output", "json", "--", "true"],
        ],
        check=True,
    )
    created = json.loads(ok.stdout)
    assert set(created) == {"id"} and isinstance(created["id"], int)
    ok_id = created["id"]
    failing_id = int(failing.stdout.strip())  # table output: just the id
    missing_id = json.loads(missing.stdout)["id"]
    elsewhere_id = json.loads(elsewhere.stdout)["id"]
    assert len({ok_id, failing_id, missing_id, elsewhere_id}) == 4
    admin_api.wait_for_jobs([ok_id, failing_id, missing_id])

    shown_ok, shown_failed, shown_missing, log_ok, log_failed, listed, table, *unknown = (
        cli.run_all(
            [
                ["jobs", "show", ok_id, "--output", "json"],
                ["jobs", "show", failing_id, "--output", "json"],
                ["jobs", "show", missing_id, "--output", "json"],
                ["logs", ok_id],
                ["logs", failing_id],
                ["jobs", "list", "--output", "json"],
                ["jobs", "list"],
                ["jobs", "show", "987654"],
                ["logs", "987654"],
            ]
        )
    )

    job = json.loads(shown_ok.stdout)
    assert (job["state"], job["exit_code"], job["attempt"]) == ("success", 0, 1)
    assert job["worker"] == "cli-edge"
    assert job["started_at"] and job["finished_at"]

    job = json.loads(shown_failed.stdout)
    assert (job["state"], job["exit_code"]) == ("failed", 3)
    assert "3" in job["reason"]

    job = json.loads(shown_missing.stdout)
    assert (job["state"], job["exit_code"]) == ("failed", None)
    assert "/nonexistent/edgefleet-no-such-command" in job["reason"]

    # stdout and stderr are both captured, for successful and failing jobs alike
    assert "to-stdout" in log_ok.stdout and "to-stderr" in log_ok.stdout
    assert "failing now" in log_failed.stdout

    jobs = {job["id"]: job for job in json.loads(listed.stdout)}
    assert jobs[ok_id]["state"] == "success"
    assert jobs[failing_id]["state"] == "failed"
    assert jobs[missing_id]["state"] == "failed"
    # a queue no worker serves: the job waits, untouched
    assert (jobs[elsewhere_id]["state"], jobs[elsewhere_id]["worker"]) == ("queued", None)

    assert "STATE" in table.stdout
    for job_id, state in [(ok_id, "success"), (failing_id, "failed"), (elsewhere_id, "queued")]:
        rows = [line.split()[:2] for line in table.stdout.splitlines()]
        assert [str(job_id), state] in rows, table.stdout

    for result in unknown:
        assert result.returncode == 1, describe(result)
        assert "987654" in result.stderr


@pytest.mark.same_on_every_backend  # the CLI's rendering
def test_list_workers_table_and_json(cli, server, start_worker):
    worker = start_worker("listed-edge", concurrency=3, queues="alpha,beta")
    as_json, as_table = cli.run_all([["list-workers", "--output", "json"], ["list-workers"]])

    rows = json.loads(as_json.stdout)
    assert [row["hostname"] for row in rows] == ["listed-edge"]
    row = rows[0]
    assert row["state"] in ("idle", "running")
    assert row["queues"] == ["alpha", "beta"]
    assert (row["concurrency"], row["concurrency_source"]) == (3, "flag")
    assert row["applied_concurrency"] == 3
    assert row["jobs_running"] == 0
    assert row["pid"] == worker.pid
    assert row["last_heartbeat"]

    header, *lines = as_table.stdout.splitlines()
    for heading in ("HOSTNAME", "STATE", "QUEUES", "CONCURRENCY", "RUNNING", "LAST_HEARTBEAT"):
        assert heading in header
    assert lines and lines[0].split()[0] == "listed-edge"
    assert "alpha,beta" in lines[0]
