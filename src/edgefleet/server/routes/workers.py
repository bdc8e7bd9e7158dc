"""Admin API for the fleet: list workers and change their desired state.

A control change (``PATCH /workers``) takes a target (one name or glob, a label selector, or
all) and one change, and answers with the change set, including the desired version each
worker has to acknowledge. The one-action routes are the same change written another way.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query

from edgefleet import fleet_rules, parsing
from edgefleet.contract import (
    ChangeSet,
    ConcurrencyExplained,
    ConcurrencySet,
    ControlRequest,
    MaintenanceRequest,
    QueuesChange,
    SetConcurrency,
    Target,
    WorkerState,
    WorkerView,
)
from edgefleet.errors import InvalidRequest
from edgefleet.server.context import ServerContext
from edgefleet.server.deps import AdminDep, ContextDep, HostnamePath, OperatorDep, ViewerDep
from edgefleet.server.params import HostPatternQuery
from edgefleet.server.services import control, credentials, explain, workers

router = APIRouter(prefix="/workers", tags=["workers"])


def parse_selector(text: str) -> dict[str, str]:
    """``site=plant1,env=prod`` -> a dict (``parsing.parse_selector``); a 400 if malformed."""
    try:
        return parsing.parse_selector(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _notify(context: ServerContext, changes: ChangeSet, later: BackgroundTasks) -> ChangeSet:
    """Wake the changed workers once the answer is sent: a fleet-wide change wakes a thousand
    long-polls, whose answers would otherwise hold this one up."""
    later.add_task(_announce, context, changes)
    return changes


def _announce(context: ServerContext, changes: ChangeSet) -> None:
    context.notifier.announce(control.wake_ups(changes))


@router.get("", response_model=list[WorkerView])
def list_workers(
    context: ContextDep,
    identity: ViewerDep,
    state: Annotated[list[WorkerState] | None, Query()] = None,
    edge_hostname: HostPatternQuery = None,
    queues: Annotated[str | None, Query(description="comma-separated; serves any")] = None,
    selector: Annotated[str | None, Query(description="KEY=VALUE[,KEY=VALUE]")] = None,
):
    if edge_hostname is not None and fleet_rules.is_glob(edge_hostname):
        fleet_rules.check_glob(edge_hostname)
    filters = workers.WorkerFilter(
        states=frozenset(state or ()),
        hostname=edge_hostname,
        queues=frozenset(parsing.split_list(queues or "")),
        selector=parse_selector(selector) if selector is not None else {},
    )
    return workers.list_workers(context.db, context.settings.worker_offline_timeout, filters)


@router.get("/{hostname}", response_model=WorkerView)
def show_worker(hostname: HostnamePath, context: ContextDep, identity: ViewerDep):
    return workers.show_worker(context.db, hostname, context.settings.worker_offline_timeout)


@router.get("/{hostname}/explain", response_model=ConcurrencyExplained)
def explain_worker(hostname: HostnamePath, context: ContextDep, identity: ViewerDep):
    """Every layer of the worker's concurrency (operator override, label rule, fleet
    default, its own flag), the one in force and why."""
    return explain.explain(context.db, hostname)


@router.delete("/{hostname}", status_code=204)
def remove_worker(hostname: HostnamePath, context: ContextDep, identity: AdminDep):
    """Forget an offline, stopped or revoked worker."""
    control.remove_worker(
        context.db, hostname, identity.subject, context.settings.worker_offline_timeout
    )


@router.patch("", response_model=ChangeSet)
def change_workers(
    body: ControlRequest, context: ContextDep, identity: OperatorDep, later: BackgroundTasks
):
    """Change the desired state of the targeted workers: one change, audited per field."""
    per_cpu = context.settings.max_concurrency_per_cpu
    changes = control.change_workers(context.db, body, identity.subject, per_cpu)
    return _notify(context, changes, later)


# The same change, one route per action (the web UI and scripts call these).


@router.put("/{hostname}/concurrency", response_model=ChangeSet)
def set_concurrency(
    hostname: HostnamePath,
    body: ConcurrencySet,
    context: ContextDep,
    identity: OperatorDep,
    later: BackgroundTasks,
):
    request = _on_one(hostname, **body.model_dump(exclude_unset=True))
    return change_workers(request, context, identity, later)


@router.delete("/{hostname}/concurrency", response_model=ChangeSet)
def reset_concurrency(
    hostname: HostnamePath, context: ContextDep, identity: OperatorDep, later: BackgroundTasks
):
    """Hand the worker's concurrency back to its own ``--concurrency`` flag."""
    return change_workers(_on_one(hostname, reset=True), context, identity, later)


def _on_one(hostname: str, **fields: Any) -> ControlRequest:
    change = {"action": "set-concurrency", **fields}
    return ControlRequest.model_validate({"target": {"edge_hostname": hostname}, "change": change})


#: ``POST /actions/<action>``: its body (the target's fields and the action's side by side)
#: and the route's name (its OpenAPI operation id).
ACTION_ROUTES: dict[str, tuple[type[Target], str]] = {
    "set-concurrency": (SetConcurrency, "bulk_set_concurrency"),
    "add-queues": (QueuesChange, "add_queues"),
    "remove-queues": (QueuesChange, "remove_queues"),
    "reset-queues": (Target, "reset_queues"),
    "request-maintenance": (MaintenanceRequest, "request_maintenance"),
    "exit-maintenance": (Target, "exit_maintenance"),
    "update-maintenance-comment": (MaintenanceRequest, "update_maintenance_comment"),
    "shutdown": (Target, "shutdown"),
}


def _add_action_route(action: str, body_model: type[Target], name: str) -> None:
    def route(
        body: Target, context: ContextDep, identity: OperatorDep, later: BackgroundTasks
    ) -> ChangeSet:
        return change_workers(ControlRequest.from_action(action, body), context, identity, later)

    route.__annotations__["body"] = body_model  # FastAPI reads the body's model from here
    path = f"/actions/{action}"
    router.add_api_route(path, route, methods=["POST"], response_model=ChangeSet, name=name)


for _action, (_body_model, _name) in ACTION_ROUTES.items():
    _add_action_route(_action, _body_model, _name)


@router.post("/actions/revoke", response_model=ChangeSet)
def revoke(body: Target, context: ContextDep, identity: AdminDep):
    """Revoke the targeted workers: their credentials stop working with their next request,
    they show as ``revoked``, and their running jobs are retried or failed as an offline
    worker's are. Coming back needs a new join token."""
    revoked = credentials.revoke_workers(context.db, body, identity.subject)
    context.authenticator.forget(set(revoked.value.workers), "credential")
    return context.settle(revoked)
