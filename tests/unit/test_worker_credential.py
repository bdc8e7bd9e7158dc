"""A worker's own credential against the scripted server (``support.edge_server``):
enrollment with a join token, the credential file, reuse across restarts, rotation and
refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgefleet.client_auth import BearerAuth
from edgefleet.worker.agent import EdgeWorker, RegistrationRefused, WorkerConfig
from edgefleet.worker.client import EdgeClient
from edgefleet.worker.credential import (
    Credential,
    CredentialKeeper,
    CredentialRevoked,
    EnrollmentError,
    credential_path,
    load_credential,
    save_credential,
)
from support import ScriptedEdgeServer, async_wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

HOST = "site-a-01"
JOIN = "efj_join-token"


@pytest.fixture
def fake() -> ScriptedEdgeServer:
    """Enrollment, renewal and registration, checking the bearer token of each request."""
    return ScriptedEdgeServer(HOST, join_token=JOIN)


def _keeper(
    fake: ScriptedEdgeServer, home: Path, join_token: str | None, **kwargs
) -> CredentialKeeper:
    auth = BearerAuth("")
    client = EdgeClient("http://edgefleet.test", HOST, auth=auth, transport=fake.transport())
    return CredentialKeeper(client, auth, credential_path(home, HOST), join_token, **kwargs)


# --- the credential file ------------------------------------------------------------------


def test_the_credential_file_is_private_json_written_whole(tmp_path):
    path = credential_path(tmp_path, HOST)
    now = datetime.now(UTC)
    save_credential(path, Credential("efw_a", now + timedelta(days=30), now))
    save_credential(path, Credential("efw_b", now + timedelta(days=60), now))

    assert path == tmp_path / "workers" / HOST / "credential"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["credential"]  # no temp file left
    data = json.loads(path.read_text())
    assert data["credential"] == "efw_b"
    assert datetime.fromisoformat(data["expires_at"]) == now + timedelta(days=60)
    assert load_credential(path) == Credential("efw_b", now + timedelta(days=60), now)


def test_a_damaged_credential_file_is_a_clear_error(tmp_path):
    path = credential_path(tmp_path, HOST)
    path.parent.mkdir(parents=True)
    path.write_text('{"credential": "efw_')
    with pytest.raises(EnrollmentError, match="damaged.*create-join"):
        load_credential(path)
    assert load_credential(tmp_path / "missing") is None


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_a_hostname_cannot_point_the_credential_elsewhere(tmp_path, name):
    with pytest.raises(EnrollmentError):
        credential_path(tmp_path, name)


# --- enrollment ---------------------------------------------------------------------------


async def test_a_join_token_is_exchanged_once_and_the_credential_used_after(fake, tmp_path):
    keeper = _keeper(fake, tmp_path, JOIN)
    await keeper.start()
    path = credential_path(tmp_path, HOST)
    assert fake.requests == [("POST", "/enroll", JOIN)]
    assert json.loads(path.read_text())["credential"] == "efw_1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keeper.auth.token == "efw_1"
    await keeper.client.renew_credential()  # any later call sends the credential
    assert fake.requests[-1][2] == "efw_1"
    await keeper.client.aclose()


async def test_a_restart_uses_the_stored_credential_and_ignores_a_join_token(
    fake, tmp_path, caplog
):
    first = _keeper(fake, tmp_path, JOIN)
    await first.start()
    await first.client.aclose()

    caplog.set_level(logging.INFO, logger="edgefleet.worker.credential")
    again = _keeper(fake, tmp_path, "efj_another")
    await again.start()
    assert fake.paths() == ["/enroll"]  # no second enrollment
    assert again.auth.token == "efw_1"
    assert "join token given is ignored" in caplog.text
    without = _keeper(fake, tmp_path, None)
    await without.start()
    assert without.auth.token == "efw_1"
    await again.client.aclose()
    await without.client.aclose()


async def test_enrollment_waits_for_a_server_that_is_not_up_yet(fake, tmp_path):
    fake.unavailable = 2
    keeper = _keeper(fake, tmp_path, JOIN)
    await asyncio.wait_for(keeper.start(), timeout=10)
    assert fake.paths() == ["/enroll"] * 3
    assert keeper.auth.token == "efw_1"
    await keeper.client.aclose()


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        ((401, "join token expired"), r"join token refused \(HTTP 401\): join token expired"),
        ((409, "holds a live credential"), r"already enrolled.*revoke-remote-edge-worker"),
    ],
)
async def test_a_refused_enrollment_shows_the_servers_reason(fake, tmp_path, refusal, expected):
    fake.refuse_enroll = refusal
    keeper = _keeper(fake, tmp_path, JOIN)
    with pytest.raises(EnrollmentError, match=expected) as caught:
        await keeper.start()
    assert refusal[1] in str(caught.value)
    assert not credential_path(tmp_path, HOST).exists()
    await keeper.client.aclose()


async def test_no_credential_and_no_join_token_says_what_to_do(fake, tmp_path):
    keeper = _keeper(fake, tmp_path, None)
    with pytest.raises(EnrollmentError, match="token create-join.*--join-token"):
        await keeper.start()
    assert fake.requests == []
    await keeper.client.aclose()


# --- refusal of the stored credential at registration ---------------------------------------


async def _register(keeper: CredentialKeeper, home: Path) -> EdgeWorker:
    config = WorkerConfig(
        hostname=HOST, concurrency=1, queues=["default"], home=home, api_url="http://x"
    )
    worker = EdgeWorker(config, keeper.client, keeper)
    await worker._register()
    return worker


async def test_a_revoked_credential_enrolls_again_with_a_join_token(fake, tmp_path):
    first = _keeper(fake, tmp_path, JOIN)
    await first.start()
    fake.live.clear()  # revoked
    fake.join_uses = 1  # a new join token's worth

    keeper = _keeper(fake, tmp_path, JOIN)
    await keeper.start()  # the stored credential first
    assert keeper.auth.token == "efw_1"
    worker = await _register(keeper, tmp_path)

    assert worker.desired is not None
    assert fake.paths()[1:] == [f"/workers/{HOST}/register", "/enroll", f"/workers/{HOST}/register"]
    assert fake.requests[-1][2] == "efw_2"
    assert load_credential(credential_path(tmp_path, HOST)).token == "efw_2"
    await first.client.aclose()
    await keeper.client.aclose()


async def test_a_revoked_credential_without_a_join_token_stops_with_a_message(fake, tmp_path):
    first = _keeper(fake, tmp_path, JOIN)
    await first.start()
    fake.live.clear()

    keeper = _keeper(fake, tmp_path, None)
    await keeper.start()
    with pytest.raises(CredentialRevoked, match="revoked or expired.*--join-token") as caught:
        await _register(keeper, tmp_path)
    assert isinstance(caught.value, EnrollmentError)
    assert str(credential_path(tmp_path, HOST)) in str(caught.value)
    assert fake.paths().count("/enroll") == 1
    await first.client.aclose()
    await keeper.client.aclose()


async def test_other_registration_refusals_are_not_taken_for_a_revocation(fake, tmp_path):
    keeper = _keeper(fake, tmp_path, JOIN)
    await keeper.start()
    fake.live.clear()
    keeper.auth.token = "efw_1"
    worker_secret_client = EdgeClient(
        "http://edgefleet.test", HOST, "s" * 40, transport=fake.transport()
    )
    config = WorkerConfig(
        hostname=HOST, concurrency=1, queues=["default"], home=tmp_path, api_url="http://x"
    )
    worker = EdgeWorker(config, worker_secret_client)  # the secret: nothing to re-enroll
    with pytest.raises(RegistrationRefused, match="unknown or revoked credential"):
        await worker._register()
    await keeper.client.aclose()
    await worker_secret_client.aclose()


async def test_a_credential_revoked_while_running_stops_the_worker(fake, tmp_path):
    keeper = _keeper(fake, tmp_path, JOIN)
    await keeper.start()
    config = WorkerConfig(
        hostname=HOST,
        concurrency=1,
        queues=["default"],
        home=tmp_path,
        api_url="http://x",
        heartbeat_interval=0.1,
        poll_interval=0.05,
        long_poll=False,
    )
    worker = EdgeWorker(config, keeper.client, keeper)
    task = asyncio.create_task(worker.run())
    await async_wait_until(lambda: worker.desired is not None, timeout=10)
    fake.live.clear()

    await asyncio.wait_for(task, timeout=20)
    assert worker.refusal is not None
    assert "revoked or expired" in worker.refusal
    await keeper.client.aclose()


# --- rotation -----------------------------------------------------------------------------


def _store_aged(home: Path, token: str, age: timedelta, life: timedelta) -> None:
    issued = datetime.now(UTC) - age
    save_credential(credential_path(home, HOST), Credential(token, issued + life, issued))


async def test_a_credential_past_half_its_life_is_renewed_and_swapped(fake, tmp_path):
    fake.live.add("efw_old")
    _store_aged(tmp_path, "efw_old", timedelta(days=16), timedelta(days=30))
    keeper = _keeper(fake, tmp_path, None, check_interval=0.05, retry_interval=0.05)
    await keeper.start()
    assert keeper.seconds_until_due() < 0

    task = asyncio.create_task(keeper.keep_fresh())
    await async_wait_until(lambda: keeper.auth.token == "efw_1", timeout=5)
    await asyncio.sleep(0.2)  # the fresh one is not due for weeks: no second renewal
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert fake.requests == [("POST", f"/workers/{HOST}/credential", "efw_old")]
    stored = load_credential(credential_path(tmp_path, HOST))
    assert stored.token == "efw_1"
    assert stat.S_IMODE(credential_path(tmp_path, HOST).stat().st_mode) == 0o600
    assert keeper.seconds_until_due() > 14 * 86400
    await keeper.client.aclose()


async def test_a_young_credential_is_not_renewed(fake, tmp_path):
    fake.live.add("efw_young")
    _store_aged(tmp_path, "efw_young", timedelta(days=1), timedelta(days=30))
    keeper = _keeper(fake, tmp_path, None, check_interval=0.05)
    await keeper.start()
    task = asyncio.create_task(keeper.keep_fresh())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert fake.requests == []
    assert 13 * 86400 < keeper.seconds_until_due() < 14 * 86400
    await keeper.client.aclose()


async def test_a_failed_renewal_is_retried_and_never_stops_the_worker(fake, tmp_path, caplog):
    fake.live.add("efw_old")
    fake.unavailable = 3
    _store_aged(tmp_path, "efw_old", timedelta(hours=20), timedelta(hours=24))
    keeper = _keeper(fake, tmp_path, None, check_interval=0.1, retry_interval=0.05)
    await keeper.start()

    task = asyncio.create_task(keeper.keep_fresh())
    await async_wait_until(lambda: keeper.auth.token == "efw_1", timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert fake.paths() == [f"/workers/{HOST}/credential"] * 4
    assert "cannot renew its credential" in caplog.text
    assert load_credential(credential_path(tmp_path, HOST)).token == "efw_1"
    await keeper.client.aclose()


async def test_a_renewal_refused_keeps_the_current_credential(fake, tmp_path):
    _store_aged(tmp_path, "efw_old", timedelta(days=20), timedelta(days=30))  # not live: 401
    keeper = _keeper(fake, tmp_path, None)
    await keeper.start()
    assert await keeper.rotate() is False
    assert keeper.auth.token == "efw_old"
    assert load_credential(credential_path(tmp_path, HOST)).token == "efw_old"
    await keeper.client.aclose()
