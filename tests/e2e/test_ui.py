"""The web UI in a real browser against a real server and real worker processes.

Chromium comes from Debian (``apt-get install chromium``) and is driven by Playwright for
Python; no browser is downloaded. The tests are skipped when either is missing. Screenshots
go to the test's tmp dir, or to ``EDGEFLEET_UI_SCREENSHOTS`` (a directory) when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.auth import Identity, mint_token
from support import wait_until

CHROMIUM = os.environ.get("EDGEFLEET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long the UI may take to show a change (it refreshes every 1.5 s).
UI_TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.same_on_every_backend,
]


def expect(actual: object):
    """Playwright's ``expect``. Playwright is imported by the tests that use it, not at
    collection, which every test process would pay for (half a second). Every expectation
    may take ``UI_TIMEOUT_MS`` (Playwright's default of 5 s is short on a loaded machine)."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=UI_TIMEOUT_MS)
    return playwright_expect(actual)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh browser context (own sessionStorage) with a desktop-sized page.

    Page errors and console errors fail the test, except failed resource loads (the UI
    shows refused requests itself, e.g. a 422 from a validation error).
    """
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, "\n".join(problems)


def screenshot(page, tmp_path: Path, name: str) -> Path:
    directory = Path(os.environ.get("EDGEFLEET_UI_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def ui_token(cli, name: str = "ui-tester", ttl: str = "1h") -> str:
    result = cli("ui-token", "--ttl", ttl, "--name", name, check=True)
    token = result.stdout.strip()
    assert token.count(".") == 2, result.stdout
    return token


def sign_in(page, server, token: str) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#signin-token")).to_be_visible()
    page.fill("#signin-token", token)
    page.click("#signin-submit")
    expect(page.locator("#app")).to_be_visible(timeout=UI_TIMEOUT_MS)


def row(page, hostname: str):
    return page.locator(f'#fleet-rows tr[data-hostname="{hostname}"]')


def open_worker(page, hostname: str) -> None:
    page.get_by_role("button", name=f"Manage {hostname}").click()
    expect(page.locator("#drawer h2")).to_have_text(hostname)


def test_ui_steers_a_live_worker(
    server, start_worker, cli, cli_json, admin_api, edgefleet_env, page, tmp_path
):
    worker = start_worker("ui-edge-1", concurrency=2, extra_args=("--label", "site=lab"))
    start_worker("ui-edge-2", concurrency=3, queues="default,gpu")

    # Sign-in: garbage and a worker's token are refused with a message; an admin token works.
    page.goto(server.url + "/")
    assert page.url.endswith("/ui")
    page.fill("#signin-token", "not-a-token")
    page.click("#signin-submit")
    expect(page.locator("#signin-error")).to_contain_text("not a token")
    secret = edgefleet_env["EDGEFLEET_SECRET"]
    worker_token = mint_token(secret, Identity(subject="ui-edge-1", role="worker"), ttl=600)
    page.fill("#signin-token", worker_token)
    page.click("#signin-submit")
    expect(page.locator("#signin-error")).to_contain_text("worker's credential")
    sign_in(page, server, ui_token(cli))
    expect(page.locator("#user-name")).to_have_text("ui-tester")
    expect(page.locator("#user-role")).to_have_text("admin")

    # The fleet: both workers, live state, desired next to applied.
    first = row(page, "ui-edge-1")
    expect(first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(row(page, "ui-edge-2")).to_be_visible()
    expect(first.locator('[data-col="state"]')).to_have_text("idle", timeout=UI_TIMEOUT_MS)
    expect(first.locator('[data-field="desired"]')).to_have_text("2")
    expect(first.locator('[data-col="labels"]')).to_contain_text("site=lab")
    expect(row(page, "ui-edge-2").locator('[data-col="queues"]')).to_contain_text("gpu")

    # The filter box narrows the table (glob), and clearing it brings the rows back.
    page.fill("#fleet-filter", "*-2")
    expect(first).to_have_count(0)
    expect(row(page, "ui-edge-2")).to_be_visible()
    page.fill("#fleet-filter", "")
    expect(first).to_be_visible()

    # Set the concurrency through the UI; the worker acknowledges it.
    open_worker(page, "ui-edge-1")
    page.fill("#w-concurrency", "5")
    page.click("#w-concurrency-set")
    view = admin_api.wait_applied("ui-edge-1", 5, pid=worker.pid)
    assert view["concurrency"] == 5 and view["concurrency_source"] == "operator"
    listed = {w["hostname"]: w for w in cli_json("list-workers")}
    assert listed["ui-edge-1"]["applied_concurrency"] == 5
    assert listed["ui-edge-1"]["applied_version"] == listed["ui-edge-1"]["desired_version"]
    expect(first.locator('[data-field="desired"]')).to_have_text("5", timeout=UI_TIMEOUT_MS)
    expect(first.locator('[data-field="applied"]')).to_have_text("5", timeout=UI_TIMEOUT_MS)
    expect(first.locator("[data-converged]")).to_have_attribute(
        "data-converged", "true", timeout=UI_TIMEOUT_MS
    )
    expect(first.locator('[data-col="conc"]')).to_contain_text("operator")
    expect(page.locator("#w-concurrency-error")).to_be_hidden()

    # Out-of-range values: the server's validation error is shown, and nothing changes.
    before = admin_api.worker("ui-edge-1")
    for bad, message in (("5000", "less than or equal to 1024"), ("0", "greater than or equal")):
        page.fill("#w-concurrency", bad)
        page.click("#w-concurrency-set")
        error = page.locator("#w-concurrency-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text(message)
        expect(error).to_contain_text("422")
    time.sleep(0.5)
    after = admin_api.worker("ui-edge-1")
    assert after["desired_version"] == before["desired_version"]
    assert after["concurrency"] == 5 and after["applied_concurrency"] == 5
    screenshot(page, tmp_path, "ui-validation-error")

    # Maintenance with a comment, shown in the fleet table, then back out of it.
    page.fill("#w-maint-comment", "swap the SSD")
    page.click("#w-maint-enter")
    admin_api.wait_for_worker("ui-edge-1", lambda v: v["state"] == "maintenance")
    expect(first.locator('[data-col="state"]')).to_have_text("maintenance", timeout=UI_TIMEOUT_MS)
    expect(first.locator('[data-col="maint"]')).to_have_text("swap the SSD")
    expect(page.locator("#w-maint-exit")).to_be_visible()
    screenshot(page, tmp_path, "ui-fleet-maintenance")
    page.click("#w-maint-exit")
    view = admin_api.wait_for_worker(
        "ui-edge-1", lambda v: v["state"] == "idle" and v["converged"], message="back to idle"
    )
    assert view["maintenance_comment"] is None
    expect(first.locator('[data-col="state"]')).to_have_text("idle", timeout=UI_TIMEOUT_MS)
    expect(first.locator('[data-col="maint"]')).to_have_text("—")

    # Reset to the worker's own flag.
    page.click("#w-concurrency-reset")
    admin_api.wait_applied("ui-edge-1", 2, pid=worker.pid)
    expect(first.locator('[data-col="conc"]')).to_contain_text("flag", timeout=UI_TIMEOUT_MS)

    # The audit log names the token's subject as the actor of every change.
    page.click('.tabs a[data-view="audit"]')
    audit_rows = page.locator("#audit-rows tr")
    expect(audit_rows.filter(has_text="maintenance_comment").first).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(audit_rows.filter(has_text="concurrency").first).to_contain_text("ui-tester")
    entries = admin_api.call("GET", "/audit", params={"edge_hostname": "ui-edge-1"})
    assert {e["actor"] for e in entries} == {"ui-tester"}
    assert {"concurrency", "maintenance", "maintenance_comment"} <= {e["field"] for e in entries}
    screenshot(page, tmp_path, "ui-audit")

    # Sign out: back to the form, and the token is gone from the tab.
    page.click("#signout")
    expect(page.locator("#signin-token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert worker.alive()


def test_ui_bulk_shutdown_and_remove(server, start_worker, admin_api, cli, page, tmp_path):
    workers = {name: start_worker(name, concurrency=1) for name in ("bulk-a", "bulk-b")}
    sign_in(page, server, ui_token(cli, name="bulk-operator"))
    for name in workers:
        expect(row(page, name)).to_be_visible(timeout=UI_TIMEOUT_MS)

    # Bulk: select both, set their concurrency in one go.
    page.click("#fleet-select-all")
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.fill("#bulk-concurrency", "4")
    page.click("#bulk-set")
    for name, process in workers.items():
        admin_api.wait_applied(name, 4, pid=process.pid)
        expect(row(page, name).locator('[data-field="applied"]')).to_have_text(
            "4", timeout=UI_TIMEOUT_MS
        )
    # A bulk validation error is shown in the bulk bar.
    page.fill("#bulk-concurrency", "2000")
    page.click("#bulk-set")
    expect(page.locator("#bulk-error")).to_contain_text("less than or equal to 1024")
    page.click("#bulk-clear")
    screenshot(page, tmp_path, "ui-fleet-bulk")

    # Shut one down from its panel: a confirm dialog first; cancelling changes nothing.
    open_worker(page, "bulk-b")
    page.click("#w-shutdown")
    expect(page.locator("#dialog")).to_be_visible()
    page.click("#dialog-cancel")
    expect(page.locator("#dialog")).to_be_hidden()
    assert workers["bulk-b"].alive()
    page.click("#w-shutdown")
    page.click("#dialog-confirm")
    assert workers["bulk-b"].wait(timeout=30) == 0
    expect(row(page, "bulk-b").locator('[data-col="state"]')).to_have_text(
        "stopped", timeout=UI_TIMEOUT_MS
    )

    # A stopped worker can be removed; its row goes away.
    remove = page.locator("#w-remove")
    expect(remove).to_be_enabled(timeout=UI_TIMEOUT_MS)
    remove.click()
    page.click("#dialog-confirm")
    expect(row(page, "bulk-b")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert admin_api.find_worker("bulk-b") is None
    assert workers["bulk-a"].alive()


def test_ui_jobs_and_logs(server, start_worker, admin_api, cli, page, tmp_path):
    start_worker("jobs-edge", concurrency=2)
    ok = admin_api.submit(["sh", "-c", "echo hello from the UI test; echo second line"])
    bad = admin_api.submit(["sh", "-c", "echo about to fail >&2; exit 3"])
    admin_api.wait_for_jobs([ok, bad])
    sign_in(page, server, ui_token(cli))

    page.click('.tabs a[data-view="jobs"]')
    ok_row = page.locator(f'#jobs-rows tr[data-id="{ok}"]')
    bad_row = page.locator(f'#jobs-rows tr[data-id="{bad}"]')
    expect(ok_row.locator('[data-col="state"]')).to_have_text("success", timeout=UI_TIMEOUT_MS)
    expect(bad_row.locator('[data-col="state"]')).to_have_text("failed")
    expect(bad_row.locator('[data-col="exit"]')).to_have_text("3")
    expect(ok_row.locator('[data-col="worker"]')).to_have_text("jobs-edge")

    ok_row.click()
    expect(page.locator("#job-log")).to_contain_text(
        "hello from the UI test", timeout=UI_TIMEOUT_MS
    )
    expect(page.locator("#job-log")).to_contain_text("second line")
    screenshot(page, tmp_path, "ui-job-log")


def test_ui_job_panel_names_secret_env_without_values(server, admin_api, cli, page, tmp_path):
    value = "ui-secret-value-never-shown"
    body = {"command": ["true"], "env": {"PLAIN": "p"}, "secret_env": {"API_TOKEN": value}}
    job_id = admin_api.call("POST", "/jobs", expect=201, json=body)["id"]
    sign_in(page, server, ui_token(cli))
    page.click('.tabs a[data-view="jobs"]')
    page.locator(f'#jobs-rows tr[data-id="{job_id}"]').click()
    expect(page.locator(".facts")).to_contain_text("API_TOKEN (secret)", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".facts")).to_contain_text("PLAIN=p")
    screenshot(page, tmp_path, "ui-job-secret-env")
    assert value not in page.content()


def test_ui_assets_are_served_safely(server):
    root = httpx.get(server.url + "/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui"
    index = httpx.get(server.url + "/ui")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-frame-options"] == "DENY"
    for asset, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        response = httpx.get(f"{server.url}/ui/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    for path in ("/ui/..%2Fapp.py", "/ui/missing.js", "/ui/%2E%2E"):
        assert httpx.get(server.url + path).status_code == 404, path


def test_ui_tokens_are_bounded(server, cli, edgefleet_env):
    secret = edgefleet_env["EDGEFLEET_SECRET"]
    url = f"{server.url}/api/v1/workers"
    short = cli("ui-token", "--ttl", "30m", check=True).stdout.strip()
    assert httpx.get(url, headers={"Authorization": f"Bearer {short}"}).status_code == 200

    # The CLI refuses lifetimes over 24 h, and the server refuses such tokens if minted anyway.
    refused = cli("ui-token", "--ttl", "48h")
    assert refused.returncode == 2 and "24h" in refused.stderr
    assert cli("ui-token", "--ttl", "soon").returncode == 2
    long_lived = mint_token(secret, Identity(subject="mallory", role="admin"), ttl=48 * 3600)
    response = httpx.get(url, headers={"Authorization": f"Bearer {long_lived}"})
    assert response.status_code == 401
    assert "lifetime" in response.json()["detail"]


def test_ui_signs_out_when_the_server_refuses_the_token(server, cli, page):
    """A token the server stops accepting (here: the secret rotated) ends the session."""
    sign_in(page, server, ui_token(cli))
    page.evaluate(
        "sessionStorage.setItem('edgefleet.ui.token', 'x.' + btoa(JSON.stringify("
        "{sub: 'x', role: 'admin', exp: Date.now() / 1000 + 600})) + '.y')"
    )
    page.reload()
    expect(page.locator("#signin-error")).to_contain_text("sign in again", timeout=UI_TIMEOUT_MS)
    wait_until(lambda: page.evaluate("sessionStorage.length") == 0, timeout=5)


# --- roles -------------------------------------------------------------------------------------


def operator_token(admin_api, role: str, name: str) -> str:
    body = {"name": name, "role": role, "ttl_seconds": 3600}
    return admin_api.call("POST", "/tokens", expect=201, json=body)["token"]


def enrolled_credential(admin_api, server, hostname: str) -> tuple[str, str]:
    """A join token, and the credential a worker got for it (the join token is then spent)."""
    join = admin_api.call("POST", "/tokens/join", expect=201, json={"uses": 1})["token"]
    spare = admin_api.call("POST", "/tokens/join", expect=201, json={"uses": 1})["token"]
    enrolled = httpx.post(
        f"{server.url}/api/v1/edge/enroll",
        json={"hostname": hostname},
        headers={"Authorization": f"Bearer {join}"},
    )
    assert enrolled.status_code == 201, enrolled.text
    return spare, enrolled.json()["credential"]


def refused_at_sign_in(page, server, token: str, message: str) -> None:
    page.goto(server.url + "/ui")
    page.fill("#signin-token", token)
    page.click("#signin-submit")
    expect(page.locator("#signin-error")).to_contain_text(message)
    expect(page.locator("#signin-error")).not_to_contain_text("null")
    expect(page.locator("#app")).to_be_hidden()


def sign_in_as(page, server, token: str, name: str, role: str) -> None:
    if page.locator("#signout").is_visible():
        page.click("#signout")
    sign_in(page, server, token)
    expect(page.locator("#user-name")).to_have_text(name)
    expect(page.locator("#user-role")).to_have_text(role)


def test_ui_shows_each_role_only_what_it_may_do(server, start_worker, admin_api, page, tmp_path):
    worker = start_worker("role-edge", concurrency=2)
    parked = admin_api.submit(["true"], queue="nobody-serves-this")
    viewer = operator_token(admin_api, "viewer", "ui-viewer")
    operator = operator_token(admin_api, "operator", "ui-operator")
    admin = operator_token(admin_api, "admin", "ui-admin")

    # A worker's credential and a join token never sign in, with a message saying why.
    join, credential = enrolled_credential(admin_api, server, "role-enrolled")
    refused_at_sign_in(page, server, credential, "worker's credential")
    refused_at_sign_in(page, server, join, "join token")
    screenshot(page, tmp_path, "ui-signin-join-token-refused")

    # A viewer sees the fleet, a worker's details and the jobs, but no control anywhere.
    sign_in_as(page, server, viewer, "ui-viewer", "viewer")
    first = row(page, "role-edge")
    expect(first.locator('[data-col="state"]')).to_have_text("idle", timeout=UI_TIMEOUT_MS)
    expect(first.locator('[data-col="sel"] input')).to_be_hidden()
    expect(page.locator("#fleet-select-all")).to_be_hidden()
    page.get_by_role("button", name="Details role-edge").click()
    expect(page.locator("#drawer h2")).to_have_text("role-edge")
    expect(page.locator("#drawer")).to_contain_text("Desired 2")
    for control in ("#w-concurrency", "#w-concurrency-set", "#w-queue-add", "#w-maint-enter"):
        expect(page.locator(control)).to_be_hidden()
    for control in ("#w-shutdown", "#w-revoke", "#w-remove"):
        expect(page.locator(control)).to_be_hidden()
    screenshot(page, tmp_path, "ui-role-viewer")
    page.click('.tabs a[data-view="jobs"]')
    expect(page.locator("#submit-form")).to_be_hidden()
    page.locator(f'#jobs-rows tr[data-id="{parked}"]').click()
    expect(page.locator("#job-log")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#drawer")).to_contain_text("nobody-serves-this")
    expect(page.locator("#job-cancel")).to_have_count(0)

    # An operator steers the worker, submits and cancels jobs, but cannot revoke or remove.
    sign_in_as(page, server, operator, "ui-operator", "operator")
    open_worker(page, "role-edge")
    for control in ("#w-shutdown", "#w-concurrency-set", "#w-maint-enter"):
        expect(page.locator(control)).to_be_visible()
    expect(page.locator("#w-revoke")).to_be_hidden()
    expect(page.locator("#w-remove")).to_be_hidden()
    page.fill("#w-concurrency", "4")
    page.click("#w-concurrency-set")
    admin_api.wait_applied("role-edge", 4, pid=worker.pid)
    expect(first.locator('[data-field="applied"]')).to_have_text("4", timeout=UI_TIMEOUT_MS)
    page.click('.tabs a[data-view="jobs"]')
    page.fill("#submit-command", "sh -c 'echo submitted from the console'")
    page.click("#submit-job")
    submitted = page.locator("#jobs-rows tr", has_text="submitted from the console")
    expect(submitted.locator('[data-col="state"]')).to_have_text("success", timeout=UI_TIMEOUT_MS)
    page.locator(f'#jobs-rows tr[data-id="{parked}"]').click()
    page.click("#job-cancel")
    page.click("#dialog-confirm")
    expect(page.locator(f'#jobs-rows tr[data-id="{parked}"] [data-col="state"]')).to_have_text(
        "cancelled", timeout=UI_TIMEOUT_MS
    )
    screenshot(page, tmp_path, "ui-role-operator-jobs")
    actors = {e["field"]: e["actor"] for e in admin_api.call("GET", "/audit")}
    assert actors["concurrency"] == "ui-operator"
    assert admin_api.job(parked)["history"][-1]["actor"] == "ui-operator"

    # An admin also sees revoke (and remove); a revoked worker is shown as such.
    sign_in_as(page, server, admin, "ui-admin", "admin")
    open_worker(page, "role-edge")
    expect(page.locator("#w-remove")).to_be_visible()
    page.click("#w-revoke")
    expect(page.locator("#dialog")).to_contain_text("new join token")
    page.click("#dialog-confirm")
    admin_api.wait_for_worker("role-edge", lambda v: v["state"] == "revoked")
    expect(first.locator('[data-col="state"]')).to_have_text("revoked", timeout=UI_TIMEOUT_MS)
    expect(first).to_have_class(re.compile(r"\brevoked\b"))
    expect(page.locator("#w-revoke")).to_be_disabled()
    revoked = [e for e in admin_api.call("GET", "/audit") if e["field"] == "revoked"]
    assert [e["actor"] for e in revoked] == ["ui-admin"]
    screenshot(page, tmp_path, "ui-role-admin-revoked")


# --- queues and concurrency layers -------------------------------------------------------------


def queue_row(page, queue: str):
    return page.locator(f'#queues-rows tr[data-queue="{queue}"]')


def listed_cap(admin_api, queue: str) -> int | None:
    return {q["queue"]: q["cap"] for q in admin_api.call("GET", "/queues")}.get(queue)


def test_ui_queues_caps_throughput_and_concurrency_sources(
    server, start_worker, admin_api, page, tmp_path
):
    worker = start_worker("layers-edge", queues="default,gpu", extra_args=("--label", "site=lab"))
    finished = [
        admin_api.submit(["true"]),
        admin_api.submit(["sh", "-c", "exit 4"]),
        admin_api.submit(["true"], queue="gpu"),
    ]
    admin_api.wait_for_jobs(finished)
    operator = operator_token(admin_api, "operator", "queue-operator")
    viewer = operator_token(admin_api, "viewer", "queue-viewer")

    # The chart shows the jobs that finished, per queue, failures apart.
    sign_in_as(page, server, operator, "queue-operator", "operator")
    page.click('.tabs a[data-view="queues"]')
    chart = page.locator("#queues-chart svg")
    expect(chart).to_have_attribute("data-total", "3", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#queues-chart rect.bar.failed")).to_have_count(1)
    expect(page.locator('#queues-legend [data-queue="default"]')).to_contain_text("1 ok, 1 failed")
    gpu = queue_row(page, "gpu")
    expect(gpu.locator('[data-col="hour"]')).to_contain_text("1 ok")
    expect(gpu.locator('[data-field="cap"]')).to_have_text("—")

    # An operator caps a queue from the page: the API and the audit log have it.
    gpu.locator(".cap-input").fill("3")
    gpu.locator(".cap-set").click()
    expect(gpu.locator('[data-field="cap"]')).to_have_text("3", timeout=UI_TIMEOUT_MS)
    assert listed_cap(admin_api, "gpu") == 3
    (entry,) = admin_api.call("GET", "/audit", params={"edge_hostname": "queue:gpu"})
    assert (entry["actor"], entry["field"], entry["new"]) == (
        "queue-operator",
        "queue_concurrency",
        3,
    )
    # The server's refusal is shown beside the queue, and nothing changes.
    gpu.locator(".cap-input").fill("0")
    gpu.locator(".cap-set").click()
    expect(gpu.locator(".cap-error")).to_contain_text("greater than or equal to 1")
    expect(gpu.locator(".cap-error")).to_contain_text("422")
    assert listed_cap(admin_api, "gpu") == 3
    # A queue not listed yet is capped from the form, and appears.
    page.fill("#cap-queue", "night")
    page.fill("#cap-value", "5")
    page.click("#cap-set")
    expect(queue_row(page, "night").locator('[data-field="cap"]')).to_have_text(
        "5", timeout=UI_TIMEOUT_MS
    )
    screenshot(page, tmp_path, "ui-queues")
    gpu.locator(".cap-reset").click()
    expect(gpu.locator('[data-field="cap"]')).to_have_text("—", timeout=UI_TIMEOUT_MS)
    assert listed_cap(admin_api, "gpu") is None
    assert len(admin_api.call("GET", "/audit", params={"edge_hostname": "queue:gpu"})) == 2

    # Workers: an operator sets a label rule and the fleet default from the page, each listed
    # with its source; a refused value shows the server's error and changes nothing.
    page.click('.tabs a[data-view="fleet"]')
    edge = row(page, "layers-edge")
    expect(edge.locator('[data-field="source"]')).to_have_text("flag", timeout=UI_TIMEOUT_MS)
    page.fill("#rule-selector", "site=lab")
    page.fill("#rule-value", "0")
    page.click("#rule-set")
    expect(page.locator("#rule-error")).to_contain_text("greater than or equal to 1")
    expect(page.locator("#rule-error")).to_contain_text("422")
    assert admin_api.call("GET", "/concurrency-rules") == []
    page.fill("#rule-value", "3")
    page.click("#rule-set")
    lab_rule = page.locator('#rules-rows tr[data-rule="site=lab"]')
    expect(lab_rule).to_contain_text("label rule", timeout=UI_TIMEOUT_MS)
    expect(lab_rule.locator('[data-field="concurrency"]')).to_have_text("3")
    expect(edge.locator('[data-field="source"]')).to_have_text(
        "rule site=lab", timeout=UI_TIMEOUT_MS
    )
    page.select_option("#rule-kind", "default")
    page.fill("#rule-value", "4")
    page.click("#rule-set")
    fleet_default = page.locator('#rules-rows tr[data-rule="default"]')
    expect(fleet_default).to_contain_text("fleet default", timeout=UI_TIMEOUT_MS)
    rules = {r["rule"]: r for r in admin_api.call("GET", "/concurrency-rules")}
    assert {name: (r["concurrency"], r["set_by"]) for name, r in rules.items()} == {
        "site=lab": (3, "queue-operator"),
        "default": (4, "queue-operator"),
    }

    # A schedule added from the page: its open window is the layer above the rule.
    page.fill("#schedule-name", "shift")
    page.fill("#schedule-selector", "site=lab")
    page.fill("#schedule-cron", "every night")
    page.fill("#schedule-for", "1h")
    page.fill("#schedule-value", "2")
    page.click("#schedule-add")
    expect(page.locator("#schedule-error")).to_contain_text("bad cron expression")
    assert admin_api.call("GET", "/schedules") == []
    page.fill("#schedule-cron", "* * * * *")
    page.click("#schedule-add")
    expect(edge.locator('[data-field="source"]')).to_have_text(
        "schedule shift", timeout=UI_TIMEOUT_MS
    )
    shift = page.locator('#schedules-rows tr[data-schedule="shift"]')
    expect(shift).to_contain_text("open until", timeout=UI_TIMEOUT_MS)
    expect(shift).to_contain_text("site=lab")
    screenshot(page, tmp_path, "ui-fleet-layers")

    # Removed from the page: the worker falls to the rule, then to the fleet default; the
    # audit log has each change, by the operator.
    shift.locator(".schedule-remove").click()
    expect(shift).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert admin_api.call("GET", "/schedules") == []
    expect(edge.locator('[data-field="source"]')).to_have_text(
        "rule site=lab", timeout=UI_TIMEOUT_MS
    )
    lab_rule.locator(".rule-remove").click()
    expect(lab_rule).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(edge.locator('[data-field="source"]')).to_have_text(
        "fleet default", timeout=UI_TIMEOUT_MS
    )
    assert [r["rule"] for r in admin_api.call("GET", "/concurrency-rules")] == ["default"]
    scheduled = admin_api.call("GET", "/audit", params={"edge_hostname": "schedule:shift"})
    assert [e["actor"] for e in scheduled] == ["queue-operator"] * 2
    comments = [
        e["comment"]
        for e in admin_api.call("GET", "/audit", params={"edge_hostname": "layers-edge"})
    ]
    assert any("label rule site=lab set to 3" in c for c in comments), comments
    assert any("label rule site=lab (3) removed" in c for c in comments), comments

    # An override for an hour (set from the page) is above every layer and shows when it ends.
    open_worker(page, "layers-edge")
    page.fill("#w-concurrency", "1")
    page.fill("#w-concurrency-for", "soon")
    page.click("#w-concurrency-set")
    expect(page.locator("#w-concurrency-error")).to_contain_text("bad duration")
    page.fill("#w-concurrency-for", "1h0m")  # read as the CLI's --for reads it
    page.click("#w-concurrency-set")
    view = admin_api.wait_applied("layers-edge", 1, pid=worker.pid)
    assert view["concurrency_source"] == "operator" and view["concurrency_until"]
    expect(edge.locator('[data-field="source"]')).to_have_text("operator", timeout=UI_TIMEOUT_MS)
    until = edge.locator('[data-field="until"]')
    in_an_hour = re.compile(r"^until (\d{4}-\d\d-\d\d )?\d\d:\d\d \(in (59m|1h 0m)\)$")
    expect(until).to_contain_text(in_an_hour)
    expect(page.locator("#drawer .facts")).to_contain_text("until")
    screenshot(page, tmp_path, "ui-fleet-override-expiry")

    # A viewer sees all of it and can change none of it.
    sign_in_as(page, server, viewer, "queue-viewer", "viewer")
    expect(until).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(fleet_default).to_contain_text("fleet default")
    expect(fleet_default.locator(".rule-remove")).to_be_hidden()
    expect(page.locator("#rule-form")).to_be_hidden()
    expect(page.locator("#schedule-form")).to_be_hidden()
    page.click('.tabs a[data-view="queues"]')
    expect(queue_row(page, "night").locator('[data-field="cap"]')).to_have_text(
        "5", timeout=UI_TIMEOUT_MS
    )
    expect(queue_row(page, "night").locator(".cap-set")).to_be_hidden()
    expect(page.locator("#cap-form")).to_be_hidden()
    expect(chart).to_have_attribute("data-total", "3")
    screenshot(page, tmp_path, "ui-queues-viewer")
