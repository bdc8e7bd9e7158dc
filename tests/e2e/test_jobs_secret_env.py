"""End-to-end: a job's secret env reaches the job on a real worker and nothing else: not the
API's listings, not the CLI, not the server's or the worker's log, not the database file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from jobs_support import jobs_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.same_on_every_backend

VALUE = "s3cr3t-value-only-the-job-may-see"


def _database_bytes(database_url: str) -> bytes:
    if not database_url.startswith("sqlite"):
        return b""
    path = Path(database_url.split("///", 1)[1])
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_secret_env_reaches_only_the_job(
    server, start_worker, cli, cli_json, jobs, database_url, processes
):
    worker = start_worker("secret-edge")
    created = cli_json(
        "submit", "--secret-env", f"TOKEN={VALUE}", "-e", "PLAIN=p", "--secret-env", "EMPTY=",
        "--", "sh", "-c", 'printf %s "$TOKEN" | sha256sum; echo "$PLAIN|${EMPTY-unset}"',
    )  # fmt: skip
    job_id = created["id"]
    assert jobs.wait_finished([job_id], timeout=60)[job_id]["state"] == "success"
    # The job prints a digest, not the value: its output is stored, and checked below.
    digest = hashlib.sha256(VALUE.encode()).hexdigest()
    assert cli("logs", job_id, check=True).stdout == f"{digest}  -\np|\n"

    listed = cli_json("jobs", "list")
    shown = cli_json("jobs", "show", job_id)
    for view in ([j for j in listed if j["id"] == job_id][0], shown):
        assert (view["env"], view["secret_env_keys"]) == ({"PLAIN": "p"}, ["EMPTY", "TOKEN"])
    table = cli("jobs", "show", job_id, check=True).stdout
    assert "EMPTY TOKEN" in table
    texts = {
        "jobs list -o json": json.dumps(listed),
        "jobs show -o json": json.dumps(shown),
        "jobs show": table,
        "jobs list": cli("jobs", "list", check=True).stdout,
        "GET /jobs": json.dumps(jobs.all()),
        f"GET /jobs/{job_id}": json.dumps(jobs.get(job_id)),
        "server log": server.log_text(),
        "worker log": worker.log_text(),
    }
    assert [where for where, text in texts.items() if VALUE in text] == []
    assert VALUE.encode() not in _database_bytes(database_url), "stored sealed, not in clear"


def test_secret_env_refusals_name_no_value(server, cli, jobs):
    both = cli("submit", "-e", "K=plain", "--secret-env", f"K={VALUE}", "--", "true")
    assert both.returncode != 0 and "both name K" in both.stderr
    malformed = cli("submit", "--secret-env", VALUE, "--", "true")
    assert malformed.returncode != 0 and "KEY=VALUE" in malformed.stderr
    for refused in (both, malformed):
        assert VALUE not in refused.stdout + refused.stderr
    assert jobs.all() == {}
