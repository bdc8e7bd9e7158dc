"""Admin API for the audit log of control changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.contract import AuditView
from edgefleet.server.deps import ContextDep, ViewerDep
from edgefleet.server.params import BeforeQuery, HostPatternQuery, SinceQuery
from edgefleet.server.services import control

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditView])
def list_audit(
    context: ContextDep,
    identity: ViewerDep,
    edge_hostname: HostPatternQuery = None,
    since: SinceQuery = None,
    limit: Annotated[int, Query(ge=1, le=100000)] = 10000,
    before: BeforeQuery = None,
):
    """Control changes, newest first: who changed which field of which worker, and why. Pass
    the last id of a page as ``before`` for the next (older) one."""
    return control.list_audit(context.db, edge_hostname, since, limit, before)
