"""The long-poll in-process: why it answers, and that a new job wakes one idle worker, not
every worker on the queue (TestClient on create_app with a migrated database)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest

from support import admin_token, auth_header, wait_until, worker_token

EDGE = "/api/v1/edge"


@pytest.fixture
def app_settings(app_settings):
    """Long-polls held up to 15 s (the suite's default is 2 s): these tests act while one is
    held, and on a loaded machine that can take longer than 2 s."""
    return app_settings.model_copy(update={"watch_timeout": 15.0})


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


def register(app_client, app_settings, hostname: str) -> tuple[dict[str, str], str]:
    headers = auth_header(worker_token(app_settings.secret, hostname))
    instance = uuid.uuid4().hex
    body = {"instance_id": instance, "concurrency": 2, "queues": ["q"], "heartbeat_interval": 30}
    response = app_client.post(f"{EDGE}/workers/{hostname}/register", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return headers, instance


def watch(app_client, hostname, worker, version=1, free_slots=2, timeout=0.5, **ack) -> dict:
    """``ack``: ``applied_version`` and ``applied_concurrency``, as the agent sends them."""
    headers, instance = worker
    params = {
        "instance_id": instance,
        "version": version,
        "free_slots": free_slots,
        "timeout": timeout,
        **ack,
    }
    response = app_client.get(f"{EDGE}/workers/{hostname}/watch", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def submit(app_client, admin, **fields) -> int:
    body = {"command": ["true"], "queue": "q", **fields}
    response = app_client.post("/api/v1/jobs", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def held_long_polls(app) -> int:
    return sum(len(waiters) for waiters in app.state.context.notifier._waiters["w"].values())


def looked_long_polls(app, queue: str = "q") -> int:
    """Held long-polls past their first look (they follow their queues from then on): a
    job queued before that look is seen by the look itself, not by a wake-up."""
    return len(app.state.context.notifier._waiters["q"].get(queue, ()))


def test_the_answer_says_why(app, app_client, app_settings, admin):
    worker = register(app_client, app_settings, "w1")
    version = watch(app_client, "w1", worker, version=0)["desired"]["version"]
    assert version >= 1
    assert watch(app_client, "w1", worker, version=version - 1)["reason"] == "changed"

    quiet = watch(app_client, "w1", worker, version=version)
    assert (quiet["reason"], quiet["cancel"]) == ("timeout", [])

    submit(app_client, admin, slots=2)
    assert watch(app_client, "w1", worker, version=version)["reason"] == "work"
    # A worker without room for the job is not woken for it.
    assert watch(app_client, "w1", worker, version=version, free_slots=1)["reason"] == "timeout"
    assert watch(app_client, "w1", worker, version=version, free_slots=0)["reason"] == "timeout"


def fetch(app_client, hostname: str, worker) -> list[dict]:
    headers, instance = worker
    body = {"instance_id": instance, "free_slots": 2, "seq": 1}
    response = app_client.post(f"{EDGE}/workers/{hostname}/fetch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def test_a_new_job_wakes_one_idle_worker_not_all(app, app_client, app_settings, admin):
    workers = {name: register(app_client, app_settings, name) for name in ("w1", "w2", "w3")}
    with ThreadPoolExecutor(len(workers)) as pool:
        answers = {
            pool.submit(watch, app_client, name, worker, timeout=5.0): name
            for name, worker in workers.items()
        }
        wait_until(lambda: looked_long_polls(app) == len(workers), timeout=10)
        job_id = submit(app_client, admin)
        woken = next(as_completed(answers))
        assert woken.result()["reason"] == "work"
        # The woken worker takes the job; the others were never disturbed.
        assert [
            job["id"] for job in fetch(app_client, answers[woken], workers[answers[woken]])
        ] == [job_id]
        others = [answer.result()["reason"] for answer in answers if answer is not woken]
    assert others == ["timeout", "timeout"]


def test_a_change_wakes_the_workers_long_poll(app, app_client, app_settings, admin):
    worker = register(app_client, app_settings, "w1")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(watch, app_client, "w1", worker, timeout=10.0)
        wait_until(lambda: held_long_polls(app) == 1, timeout=10)
        body = {"edge_hostname": "w1", "concurrency": 5}
        response = app_client.post(
            "/api/v1/workers/actions/set-concurrency", json=body, headers=admin
        )
        assert response.status_code == 200, response.text
        contact = answer.result()
    assert (contact["reason"], contact["desired"]["concurrency"]) == ("changed", 5)


def test_a_change_committed_during_the_look_still_wakes_the_long_poll(
    app, app_client, app_settings, admin, monkeypatch
):
    """The race of a long-poll that (re)starts as a change lands: the change commits after the
    long-poll read the desired state and before it waits. The wake-up must not be lost: the
    long-poll finds it set when it starts to wait, and answers with the change (on SQLite it
    never re-reads by itself, so a lost wake-up would hold it until its timeout)."""
    from edgefleet.server.routes import edge

    worker = register(app_client, app_settings, "w1")
    version = watch(app_client, "w1", worker, version=0)["desired"]["version"]
    real_look, real_wait, looks, woken = edge.watch_service.look_many, edge.wait_event, [], []

    def look_then_change(*args, **kwargs):
        seen = real_look(*args, **kwargs)
        looks.extend(one.reason for one in seen)
        if len(looks) == 1:  # right after the first look: the operator's change lands
            body = {"edge_hostname": "w1", "concurrency": 7}
            response = app_client.post(
                "/api/v1/workers/actions/set-concurrency", json=body, headers=admin
            )
            assert response.status_code == 200, response.text
        return seen

    async def wait_event(event, timeout):
        woken.append(event.is_set())
        return await real_wait(event, timeout)

    monkeypatch.setattr(edge.watch_service, "look_many", look_then_change)
    monkeypatch.setattr(edge, "wait_event", wait_event)
    contact = watch(app_client, "w1", worker, version=version, timeout=5.0)
    assert (contact["reason"], contact["desired"]["concurrency"]) == ("changed", 7)
    assert looks == [None]  # the first look saw nothing: the race did happen
    assert woken == [True]  # and the change handed its state over: no second look


def shown(app_client, admin, hostname: str) -> dict:
    response = app_client.get(f"/api/v1/workers/{hostname}", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_long_poll_carries_the_acknowledgement_before_it_waits(
    app, app_client, app_settings, admin
):
    worker = register(app_client, app_settings, "w1")
    version = watch(app_client, "w1", worker, version=0)["desired"]["version"]
    assert shown(app_client, admin, "w1")["applied_version"] == 0
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            watch,
            app_client,
            "w1",
            worker,
            version=version,
            timeout=5.0,
            applied_version=version,
            applied_concurrency=2,
            state="idle",
        )
        view = wait_until(
            lambda: (v := shown(app_client, admin, "w1"))["applied_version"] == version and v,
            timeout=10,
        )
        assert held_long_polls(app) == 1  # recorded while the long-poll is held
        assert (view["applied_concurrency"], view["converged"]) == (2, True)
        assert view["applied_at"] is not None
        body = {"edge_hostname": "w1", "concurrency": 5}
        response = app_client.post(
            "/api/v1/workers/actions/set-concurrency", json=body, headers=admin
        )
        assert response.status_code == 200, response.text
        assert held.result()["reason"] == "changed"
    assert shown(app_client, admin, "w1")["converged"] is False


def test_an_acknowledgement_never_goes_back(app, app_client, app_settings, admin):
    """A heartbeat sent before its worker learnt a version may land after the long-poll that
    acknowledged it: the older version it carries changes nothing."""
    worker = register(app_client, app_settings, "w1")
    body = {"edge_hostname": "w1", "concurrency": 5}
    response = app_client.post("/api/v1/workers/actions/set-concurrency", json=body, headers=admin)
    version = response.json()["versions"]["w1"]
    ack = {"applied_version": version, "applied_concurrency": 5, "state": "running"}
    assert watch(app_client, "w1", worker, version=version, **ack)["reason"] == "timeout"
    acked = shown(app_client, admin, "w1")
    headers, instance = worker
    beat = {"instance_id": instance, "state": "idle", "applied_version": version - 1}
    response = app_client.post(
        f"{EDGE}/workers/w1/heartbeat",
        json=beat | {"applied_concurrency": 2},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    after = shown(app_client, admin, "w1")
    fields = ("applied_version", "applied_concurrency", "applied_at")
    assert [after[f] for f in fields] == [acked[f] for f in fields]
    assert (acked["applied_version"], acked["applied_concurrency"]) == (version, 5)
    # The state the long-poll brought stands too. (Read after the heartbeat, which also
    # keeps the worker from looking offline on a slow machine: tests use a 10 s timeout.)
    assert after["state"] == "running"


@pytest.mark.parametrize(
    "query",
    [
        {"applied_version": 1, "applied_concurrency": 2},
        {"applied_concurrency": 2, "state": "idle"},
        {"applied_version": -1, "applied_concurrency": 2, "state": "idle"},
        {"applied_version": 1, "applied_concurrency": 2, "state": "busy"},
    ],
)
def test_an_acknowledgement_on_a_long_poll_is_both_fields_within_bounds(
    app, app_client, app_settings, query
):
    headers, instance = register(app_client, app_settings, "w1")
    params = {"instance_id": instance, "version": 0, "timeout": 0.1, **query}
    response = app_client.get(f"{EDGE}/workers/w1/watch", params=params, headers=headers)
    assert response.status_code in (400, 422), response.text


def test_the_schema_documents_the_query_the_route_reads(app):
    """The long-poll reads its own query (``WatchQuery``): the schema must still list it."""
    from edgefleet.contract import WatchQuery

    operation = app.openapi()["paths"][f"{EDGE}/workers/{{hostname}}/watch"]["get"]
    documented = {p["name"]: p["required"] for p in operation["parameters"] if p["in"] == "query"}
    fields = WatchQuery.model_fields
    assert documented == {name: field.is_required() for name, field in fields.items()}
    assert operation["security"] == [{"HTTPBearer": []}]
