"""Standing concurrency rules (``/api/v1/concurrency-rules``): worker override -> label rule
-> fleet default -> flag, resolved onto each worker row, audited, guarded by its CPUs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edgefleet.auth import Identity, mint_token
from edgefleet.contract import Registration
from edgefleet.server.services import dispatch, workers
from support import admin_token, auth_header
from support.api import ADMIN_SUBJECT

RULES = "/api/v1/concurrency-rules"
#: name -> (labels, CPUs reported); each starts with ``-c 2``.
FLEET: dict[str, tuple[dict[str, str], int | None]] = {
    "w1": ({"site": "a", "zone": "1"}, 2),
    "w2": ({"site": "a"}, 2),
    "w3": ({"site": "b"}, None),
}


@pytest.fixture
def admin(app_settings) -> dict[str, str]:
    return auth_header(admin_token(app_settings.secret))


def register(
    app, hostname: str, labels: dict[str, str], cpus: int | None = 2, replaces: str | None = None
):
    registration = Registration(
        instance_id=uuid.uuid4().hex,
        replaces=replaces,
        concurrency=2,
        queues=["default"],
        heartbeat_interval=1,
        labels=labels,
        sysinfo={} if cpus is None else {"cpus": cpus},
    )
    return workers.register(app.state.context.db, hostname, registration, 5.0)


@pytest.fixture
def fleet(app, app_client) -> None:
    for hostname, (labels, cpus) in FLEET.items():
        register(app, hostname, labels, cpus)


def in_force(app_client, admin) -> dict[str, tuple[int, str, str | None]]:
    rows = app_client.get("/api/v1/workers", headers=admin).json()
    return {
        r["hostname"]: (r["concurrency"], r["concurrency_source"], r["concurrency_rule"])
        for r in rows
    }


def versions(app_client, admin) -> dict[str, int]:
    rows = app_client.get("/api/v1/workers", headers=admin).json()
    return {row["hostname"]: row["desired_version"] for row in rows}


def put_rule(app_client, admin, concurrency: int, selector: dict | None = None, **extra: Any):
    body = {"selector": selector} if selector is not None else {"default": True}
    return app_client.put(RULES, json={**body, "concurrency": concurrency, **extra}, headers=admin)


def set_override(app_client, admin, hostname: str, **change: Any):
    body = {
        "target": {"edge_hostname": hostname},
        "change": {"action": "set-concurrency", **change},
    }
    return app_client.patch("/api/v1/workers", json=body, headers=admin)


def audit(app_client, admin) -> list[dict[str, Any]]:
    return app_client.get("/api/v1/audit", params={"limit": 1000}, headers=admin).json()


def test_layers_resolve_override_then_label_rule_then_fleet_default_then_flag(
    fleet, app_client, admin
):
    before = versions(app_client, admin)
    answer = put_rule(app_client, admin, 4).json()
    assert answer["rule"]["rule"] == "default" and answer["rule"]["source"] == "fleet-default"
    assert answer["changes"]["versions"] == {h: v + 1 for h, v in before.items()}
    assert in_force(app_client, admin) == {h: (4, "fleet-default", None) for h in FLEET}
    rows = [r for r in audit(app_client, admin) if r["field"] == "concurrency"]
    assert {(r["target"], r["old"], r["new"]) for r in rows} == {
        *((h, 2, 4) for h in FLEET),
        ("rule:default", None, 4),  # the rule's own change
    }
    assert {(r["actor"], r["comment"]) for r in rows} == {(ADMIN_SUBJECT, "fleet default set to 4")}

    put_rule(app_client, admin, 6, {"site": "a"})
    assert in_force(app_client, admin) == {
        "w1": (6, "label-rule", "site=a"),
        "w2": (6, "label-rule", "site=a"),
        "w3": (4, "fleet-default", None),
    }
    assert audit(app_client, admin)[0]["comment"] == "label rule site=a set to 6"

    set_override(app_client, admin, "w1", concurrency=3)
    versions_then = versions(app_client, admin)
    answer = app_client.delete(RULES, params={"selector": "site=a"}, headers=admin).json()
    assert answer["removed"] and answer["changes"]["workers"] == ["w2"]  # w1: its override
    assert versions(app_client, admin)["w1"] == versions_then["w1"]
    assert in_force(app_client, admin) == {
        "w1": (3, "operator", None),
        "w2": (4, "fleet-default", None),
        "w3": (4, "fleet-default", None),
    }
    set_override(app_client, admin, "w1", reset=True)  # back to the standing layer
    assert in_force(app_client, admin)["w1"] == (4, "fleet-default", None)
    app_client.delete(RULES, params={"default": "true"}, headers=admin)
    assert in_force(app_client, admin) == {h: (2, "flag", None) for h in FLEET}
    assert app_client.get(RULES, headers=admin).json() == []
    rules = [r for r in audit(app_client, admin) if r["target"].startswith("rule:")]
    assert [(r["target"], r["old"], r["new"]) for r in reversed(rules)] == [
        ("rule:default", None, 4),
        ("rule:site=a", None, 6),
        ("rule:site=a", 6, None),
        ("rule:default", 4, None),
    ]


def test_a_rule_is_audited_even_when_no_worker_moves(fleet, app_client, admin):
    """Who set a rule, and when, can be told though it decides for no worker yet."""
    before = versions(app_client, admin)
    assert put_rule(app_client, admin, 5, {"site": "nowhere"}).status_code == 200
    assert put_rule(app_client, admin, 5, {"site": "nowhere"}).status_code == 200  # the same
    assert app_client.delete(RULES, params={"selector": "site=nowhere"}, headers=admin).is_success
    assert versions(app_client, admin) == before
    rows = [(r["actor"], r["target"], r["old"], r["new"]) for r in audit(app_client, admin)]
    assert rows == [
        (ADMIN_SUBJECT, "rule:site=nowhere", 5, None),
        (ADMIN_SUBJECT, "rule:site=nowhere", None, 5),
    ]


def test_the_claim_path_counts_with_the_layer(app, fleet, app_client, admin):
    app_client.post("/api/v1/jobs", json={"command": ["true"]}, headers=admin)
    put_rule(app_client, admin, 5, {"site": "b"})
    instance = app_client.get("/api/v1/workers/w3", headers=admin).json()["instance_id"]
    _jobs, desired = dispatch.claim(app.state.context.db, "w3", instance, free_slots=1)
    assert (desired.concurrency, desired.concurrency_source) == (5, "label-rule")


def test_the_most_specific_rule_wins_and_ties_go_to_the_newest(fleet, app_client, admin):
    put_rule(app_client, admin, 5, {"site": "a"})
    put_rule(app_client, admin, 7, {"zone": "1"})
    assert in_force(app_client, admin)["w1"] == (7, "label-rule", "zone=1")  # newest
    put_rule(app_client, admin, 3, {"zone": "1", "site": "a"})
    assert in_force(app_client, admin)["w1"] == (3, "label-rule", "site=a,zone=1")
    put_rule(app_client, admin, 5, {"site": "a"})  # newer, but fewer keys
    assert in_force(app_client, admin)["w1"] == (3, "label-rule", "site=a,zone=1")
    app_client.delete(RULES, params={"selector": "zone=1,site=a"}, headers=admin)
    assert in_force(app_client, admin)["w1"] == (5, "label-rule", "site=a")  # now the newest
    rules = app_client.get(RULES, headers=admin).json()
    assert [(r["rule"], r["concurrency"]) for r in rules] == [("site=a", 5), ("zone=1", 7)]


def test_a_rule_applies_to_workers_that_join_later_and_to_changed_labels(
    app, fleet, app_client, admin
):
    put_rule(app_client, admin, 5, {"site": "c"})
    desired = register(app, "w4", {"site": "c"})
    assert (desired.concurrency, desired.concurrency_source) == (5, "label-rule")
    assert in_force(app_client, admin)["w4"] == (5, "label-rule", "site=c")
    joined = [row for row in audit(app_client, admin) if row["target"] == "w4"]
    assert [(r["actor"], r["field"], r["new"]) for r in joined] == [
        ("server", "concurrency_source", "label-rule"),
        ("server", "concurrency", 5),
    ]
    assert "label rule site=c" in joined[-1]["comment"]

    row = app_client.get("/api/v1/workers/w3", headers=admin).json()
    version, instance = row["desired_version"], row["instance_id"]
    desired = register(app, "w3", {"site": "c"}, replaces=instance)  # restarted, relabelled
    assert (desired.concurrency, desired.version) == (5, version + 1)
    row = audit(app_client, admin)[1]  # concurrency, then its source
    assert (row["actor"], row["target"], row["old"], row["new"]) == ("server", "w3", 2, 5)
    assert "label rule site=c" in row["comment"]


def test_the_cpu_guardrail_refuses_unless_forced(fleet, app_client, admin):
    """Settings default: 8 per CPU; w1 and w2 report 2 CPUs, w3 none."""
    refused = set_override(app_client, admin, "w1", concurrency=17)
    assert refused.status_code == 409
    assert "'w1'" in refused.text and "2 CPUs" in refused.text and "(16)" in refused.text
    assert set_override(app_client, admin, "w1", concurrency=16).status_code == 200
    forced = app_client.put(
        "/api/v1/workers/w2/concurrency", json={"concurrency": 40, "force": True}, headers=admin
    )
    assert forced.status_code == 200
    assert set_override(app_client, admin, "w3", concurrency=900).status_code == 200

    before = (versions(app_client, admin), len(audit(app_client, admin)))
    refused = put_rule(app_client, admin, 20, {"site": "a"})
    assert refused.status_code == 409 and "'w1'" in refused.text
    refused = put_rule(app_client, admin, 20)  # the default matches every worker
    assert refused.status_code == 409
    assert (versions(app_client, admin), len(audit(app_client, admin))) == before
    assert app_client.get(RULES, headers=admin).json() == []
    assert put_rule(app_client, admin, 20, {"site": "a"}, force=True).status_code == 200
    assert put_rule(app_client, admin, 300, {"site": "b"}).status_code == 200  # w3: no CPUs


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "says"),
    [
        ("PUT", {"json": {"selector": {}, "concurrency": 3}}, 400, "empty selector"),
        ("PUT", {"json": {"concurrency": 3}}, 400, "exactly one"),
        ("PUT", {"json": {"selector": {"a": "b"}, "default": True, "concurrency": 3}}, 400, ""),
        ("PUT", {"json": {"default": True, "concurrency": 0}}, 422, "concurrency"),
        ("PUT", {"json": {"selector": {"a": "b"}, "concurrency": 2000}}, 422, "concurrency"),
        ("DELETE", {"params": {"selector": "site=zz"}}, 404, "no concurrency rule"),
        ("DELETE", {"params": {"default": "true"}}, 404, "no fleet default"),
        ("DELETE", {"params": {"selector": ""}}, 400, "empty selector"),
        ("DELETE", {}, 400, "exactly one"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    fleet, app_client, admin, method, kwargs, status, says
):
    before = (versions(app_client, admin), len(audit(app_client, admin)))
    response = app_client.request(method, RULES, headers=admin, **kwargs)
    assert response.status_code == status, response.text
    assert says in response.text
    assert (versions(app_client, admin), len(audit(app_client, admin))) == before
    assert app_client.get(RULES, headers=admin).json() == []


def test_viewers_read_rules_and_operators_change_them(app_settings, fleet, app_client):
    def header(role: str) -> dict[str, str]:
        return auth_header(mint_token(app_settings.secret, Identity(subject=role, role=role)))

    assert put_rule(app_client, header("viewer"), 3).status_code == 403
    assert put_rule(app_client, header("operator"), 3).status_code == 200
    assert app_client.get(RULES, headers=header("viewer")).json()[0]["set_by"] == "operator"
    assert app_client.get("/api/v1/workers/w1/explain", headers=header("viewer")).is_success


def test_explain_names_every_layer_and_the_one_in_force(fleet, app_client, admin):
    put_rule(app_client, admin, 4)
    put_rule(app_client, admin, 6, {"site": "a"})
    put_rule(app_client, admin, 5, {"site": "a", "zone": "1"})
    explained = app_client.get("/api/v1/workers/w1/explain", headers=admin).json()
    layers = {row["layer"]: row for row in explained["layers"]}
    assert list(layers) == ["operator", "schedule", "label-rule", "fleet-default", "flag"]
    assert [layers[n]["concurrency"] for n in layers] == [None, None, 5, 4, 2]
    assert [n for n in layers if layers[n]["in_force"]] == ["label-rule"]
    assert layers["label-rule"]["rule"] == "site=a,zone=1"
    assert "also matching: site=a (6)" in layers["label-rule"]["note"]
    assert explained["concurrency_rule"] == "site=a,zone=1" and "most keys" in explained["why"]

    set_override(app_client, admin, "w1", concurrency=3)
    explained = app_client.get("/api/v1/workers/w1/explain", headers=admin).json()
    assert (explained["concurrency"], explained["concurrency_source"]) == (3, "operator")
    assert [r["layer"] for r in explained["layers"] if r["in_force"]] == ["operator"]
    assert explained["concurrency_rule"] is None
