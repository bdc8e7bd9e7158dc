"""Admin API for standing concurrency rules: label rules and the fleet default.

Reading them takes a viewer token, changing them an operator's; every change is audited on
the workers whose concurrency it moves, and wakes them as any control change does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.contract import ConcurrencyRuleChange, ConcurrencyRuleSet, ConcurrencyRuleView
from edgefleet.server.deps import ContextDep, OperatorDep, ViewerDep
from edgefleet.server.routes.workers import parse_selector
from edgefleet.server.services import concurrency_rules

router = APIRouter(prefix="/concurrency-rules", tags=["concurrency rules"])


@router.get("", response_model=list[ConcurrencyRuleView])
def list_rules(context: ContextDep, identity: ViewerDep):
    return concurrency_rules.list_rules(context.db)


@router.put("", response_model=ConcurrencyRuleChange)
def set_rule(body: ConcurrencyRuleSet, context: ContextDep, identity: OperatorDep):
    """Create or change the rule for ``selector`` (or the fleet default with ``default``)."""
    per_cpu = context.settings.max_concurrency_per_cpu
    outcome = concurrency_rules.set_rule(context.db, body, identity.subject, per_cpu)
    return context.settle(outcome)


@router.delete("", response_model=ConcurrencyRuleChange)
def remove_rule(
    context: ContextDep,
    identity: OperatorDep,
    selector: Annotated[str | None, Query(description="KEY=VALUE[,KEY=VALUE]")] = None,
    default: bool = False,
):
    """Remove the rule for ``selector`` (or the fleet default with ``default=true``)."""
    labels = parse_selector(selector) if selector is not None else None
    outcome = concurrency_rules.remove_rule(context.db, labels, default, identity.subject)
    return context.settle(outcome)
