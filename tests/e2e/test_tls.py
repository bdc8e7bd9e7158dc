"""End-to-end: HTTPS between the server, its workers and the CLI.

A throwaway CA (``tls_files``) signs the server's certificate; nothing on this machine trusts
it unless told (``--ca-file`` / ``EDGEFLEET_CA_FILE``). A client that cannot verify the
server must say so in one line and exit non-zero, never print a traceback or retry for ever.
"""

from __future__ import annotations

import json
import sys

import pytest

from support import AdminApi, TlsFiles, squash, wait_until
from support.cli import describe

pytestmark = pytest.mark.same_on_every_backend


def _one_line_error(text: str) -> str:
    """The only line of ``text`` (stderr, or a failed worker's whole log); no traceback."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_a_worker_and_the_cli_work_over_https_with_the_ca_file(
    server_factory, tls_files: TlsFiles, start_worker, cli, edgefleet_env
):
    server = server_factory(tls=tls_files)
    assert server.url.startswith("https://")
    start_worker("tls-edge", extra_args=("--ca-file", str(tls_files.ca)))

    # The CLI: the global --ca-file option, or EDGEFLEET_CA_FILE.
    code = "print('over tls')"
    submitted = cli(
        "--ca-file", tls_files.ca, "submit", "-o", "json", "--", sys.executable, "-c", code
    )
    assert submitted.returncode == 0, describe(submitted)
    job_id = json.loads(submitted.stdout)["id"]
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"], verify=server.verify) as api:
        (job,) = api.wait_for_jobs([job_id]).values()
    assert (job["state"], job["worker"]) == ("success", "tls-edge")

    env = {**edgefleet_env, "EDGEFLEET_CA_FILE": str(tls_files.ca)}
    logs = cli("logs", job_id, env=env)
    assert logs.returncode == 0, describe(logs)
    assert "over tls" in logs.stdout


def test_without_the_ca_file_the_worker_and_the_cli_fail_in_one_line(
    server_factory, tls_files: TlsFiles, start_worker, cli
):
    server = server_factory(tls=tls_files)
    expected = f"TLS: cannot verify {server.url}: certificate verify failed:"

    listed = cli("list-workers")
    assert listed.returncode != 0, describe(listed)
    line = _one_line_error(listed.stderr)
    assert line.startswith(f"error: {expected}"), line
    assert line.endswith("(give --ca-file / EDGEFLEET_CA_FILE)"), line

    # A CA that did not sign the server's certificate is no better.
    other = cli("--ca-file", tls_files.stranger, "list-workers")
    assert other.returncode != 0, describe(other)
    assert _one_line_error(other.stderr).startswith(f"error: {expected}")

    # The worker: a configuration problem at start-up, not an outage to wait out.
    worker = start_worker("untrusting-edge", wait=False)
    assert worker.wait(timeout=30) != 0
    line = _one_line_error(worker.log_text())
    assert line.startswith(f"error: {expected}"), line
    with AdminApi(server.url, cli.env["EDGEFLEET_SECRET"], verify=server.verify) as api:
        assert api.find_worker("untrusting-edge") is None


def test_mutual_tls_refuses_a_client_without_a_certificate(
    server_factory, tls_files: TlsFiles, start_worker, cli, edgefleet_env
):
    server = server_factory(tls=tls_files, mutual=True)
    trusting = {**edgefleet_env, "EDGEFLEET_CA_FILE": str(tls_files.ca)}

    anonymous = cli("list-workers", env=trusting)
    assert anonymous.returncode != 0, describe(anonymous)
    line = _one_line_error(anonymous.stderr)
    assert "--client-cert" in line, line

    stranger = cli(
        "list-workers", env={**trusting, "EDGEFLEET_CLIENT_CERT": str(tls_files.stranger)}
    )
    assert stranger.returncode != 0, describe(stranger)
    assert "is it signed by the CA the server trusts?" in _one_line_error(stranger.stderr)

    # The global --client-cert option, or EDGEFLEET_CLIENT_CERT.
    known = cli("--client-cert", tls_files.client, "list-workers", env=trusting)
    assert known.returncode == 0, describe(known)
    known = cli("list-workers", env={**trusting, "EDGEFLEET_CLIENT_CERT": str(tls_files.client)})
    assert known.returncode == 0, describe(known)

    # A worker with the client certificate registers; one without never gets in.
    start_worker("mtls-edge", env=trusting, extra_args=("--client-cert", str(tls_files.client)))
    refused = start_worker("no-cert-edge", env=trusting, wait=False)
    wait_until(
        lambda: "--client-cert" in refused.log_text(),
        timeout=30,
        message=lambda: refused.log_tail(),
    )
    assert "Traceback" not in refused.log_text()
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"], verify=server.verify) as api:
        assert api.worker("mtls-edge")["pid"]
        assert api.find_worker("no-cert-edge") is None


def test_a_malformed_api_url_is_a_one_line_error(cli, start_worker, edgefleet_env):
    env = {**edgefleet_env, "EDGEFLEET_API_URL": "127.0.0.1:8080"}
    listed = cli("list-workers", env=env)
    assert listed.returncode != 0, describe(listed)
    assert "bad API URL '127.0.0.1:8080'" in _one_line_error(listed.stderr)

    worker = start_worker("lost-edge", wait=False, extra_args=("--api-url", "htp://nowhere"))
    assert worker.wait(timeout=30) != 0
    assert "bad API URL 'htp://nowhere'" in squash(_one_line_error(worker.log_text()))


def test_a_worker_enrolled_by_join_token_runs_jobs_over_mutual_tls(
    server_factory, tls_files: TlsFiles, start_worker, cli, edgefleet_env, tmp_path
):
    server = server_factory(tls=tls_files, mutual=True)
    tls_env = {
        **edgefleet_env,
        "EDGEFLEET_CA_FILE": str(tls_files.ca),
        "EDGEFLEET_CLIENT_CERT": str(tls_files.client),
    }
    created = cli("token", "create-join", "--uses", "1", "-o", "json", env=tls_env)
    assert created.returncode == 0, describe(created)
    join_token = json.loads(created.stdout)["token"]

    # Another machine: no secret, no database; only the CA, its certificate and the token.
    home = tmp_path / "remote-home"
    home.mkdir()
    remote = {k: v for k, v in tls_env.items() if k not in ("EDGEFLEET_SECRET", "EDGEFLEET_DB_URL")}
    remote["EDGEFLEET_HOME"] = str(home)
    worker = start_worker(
        "enrolled-tls-edge",
        queues="remote",
        extra_args=("--join-token", join_token),
        env=remote,
        wait=False,
    )
    with AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"], verify=server.verify) as api:
        api.wait_for_worker(
            "enrolled-tls-edge",
            lambda view: view["pid"] == worker.pid and view["applied_version"] > 0,
            message=worker.log_tail(),
        )
        job_id = api.submit(["sh", "-c", "echo enrolled-over-tls"], queue="remote")
        assert api.wait_for_jobs([job_id])[job_id]["state"] == "success"
        assert "enrolled-over-tls" in api.job_log(job_id)
    assert (home / "workers" / "enrolled-tls-edge" / "credential").exists()
    assert not (home / "secret").exists()


def test_the_server_refuses_unusable_tls_files_in_one_line(server_factory, tls_files: TlsFiles):
    # The CA's certificate alone: no private key.
    server = server_factory(wait=False, extra_args=("--ssl-certfile", str(tls_files.ca)))
    assert server.wait(timeout=60) != 0
    line = _one_line_error(server.log_text())
    assert line.startswith(
        f"error: TLS: {tls_files.ca}: not a PEM certificate with its private key"
    )

    missing = tls_files.ca.parent / "missing.pem"
    extra_args = ("--ssl-certfile", str(tls_files.server), "--ssl-client-ca", str(missing))
    server = server_factory(migrate=False, wait=False, extra_args=extra_args)
    assert server.wait(timeout=60) != 0
    assert (
        _one_line_error(server.log_text()) == f"error: TLS: --ssl-client-ca {missing}: no such file"
    )
