"""Admin API for the fleet: list workers and change their desired state.

Control actions take a target in the body (one name or glob, a label selector, or all) and
answer with the change set, including the desired version each worker has to acknowledge.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet import fleet_rules, parsing
from edgefleet.contract import (
    ChangeSet,
    ConcurrencySet,
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
from edgefleet.server.events import Outcome, changed_workers
from edgefleet.server.params import HostPatternQuery
from edgefleet.server.services import control, credentials, workers

router = APIRouter(prefix="/workers", tags=["workers"])


def parse_selector(text: str) -> dict[str, str]:
    """``site=plant1,env=prod`` -> a dict (``parsing.parse_selector``); a 400 if malformed."""
    try:
        return parsing.parse_selector(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _notify(context: ServerContext, changes: ChangeSet) -> ChangeSet:
    return context.settle(Outcome(changes, changed_workers(changes)))


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


@router.delete("/{hostname}", status_code=204)
def remove_worker(hostname: HostnamePath, context: ContextDep, identity: AdminDep):
    """Forget an offline, stopped or revoked worker."""
    control.remove_worker(
        context.db, hostname, identity.subject, context.settings.worker_offline_timeout
    )


@router.put("/{hostname}/concurrency", response_model=ChangeSet)
def set_concurrency(
    hostname: HostnamePath, body: ConcurrencySet, context: ContextDep, identity: OperatorDep
):
    request = SetConcurrency(edge_hostname=hostname, concurrency=body.concurrency)
    return _notify(context, control.set_concurrency(context.db, request, identity.subject))


@router.delete("/{hostname}/concurrency", response_model=ChangeSet)
def reset_concurrency(hostname: HostnamePath, context: ContextDep, identity: OperatorDep):
    """Hand the worker's concurrency back to its own ``--concurrency`` flag."""
    request = SetConcurrency(edge_hostname=hostname, reset=True)
    return _notify(context, control.set_concurrency(context.db, request, identity.subject))


@router.post("/actions/set-concurrency", response_model=ChangeSet)
def bulk_set_concurrency(body: SetConcurrency, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.set_concurrency(context.db, body, identity.subject))


@router.post("/actions/add-queues", response_model=ChangeSet)
def add_queues(body: QueuesChange, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.add_queues(context.db, body, identity.subject))


@router.post("/actions/remove-queues", response_model=ChangeSet)
def remove_queues(body: QueuesChange, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.remove_queues(context.db, body, identity.subject))


@router.post("/actions/reset-queues", response_model=ChangeSet)
def reset_queues(body: Target, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.reset_queues(context.db, body, identity.subject))


@router.post("/actions/request-maintenance", response_model=ChangeSet)
def request_maintenance(body: MaintenanceRequest, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.request_maintenance(context.db, body, identity.subject))


@router.post("/actions/exit-maintenance", response_model=ChangeSet)
def exit_maintenance(body: Target, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.exit_maintenance(context.db, body, identity.subject))


@router.post("/actions/update-maintenance-comment", response_model=ChangeSet)
def update_maintenance_comment(
    body: MaintenanceRequest, context: ContextDep, identity: OperatorDep
):
    return _notify(context, control.update_maintenance_comment(context.db, body, identity.subject))


@router.post("/actions/shutdown", response_model=ChangeSet)
def shutdown(body: Target, context: ContextDep, identity: OperatorDep):
    return _notify(context, control.request_shutdown(context.db, body, identity.subject))


@router.post("/actions/revoke", response_model=ChangeSet)
def revoke(body: Target, context: ContextDep, identity: AdminDep):
    """Revoke the targeted workers: their credentials stop working with their next request,
    they show as ``revoked``, and their running jobs are retried or failed as an offline
    worker's are. Coming back needs a new join token."""
    revoked = credentials.revoke_workers(context.db, body, identity.subject)
    context.authenticator.forget(set(revoked.value.workers), "credential")
    return context.settle(revoked)
