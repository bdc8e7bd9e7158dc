"""Standing concurrency rules: label rules and the fleet default, set, removed and listed.

A label rule gives every worker with its labels a concurrency, also workers that join
later; the fleet default (the rule with the empty selector) gives one to every worker no
label rule matches. Below a worker's operator override, above its own flag. Each change is
one transaction: the rule is written and every worker's standing layer is resolved again
(``layers.refresh``), so a worker whose concurrency in force moved gets a new desired
version and audit rows naming the rule. The rule's own change is audited too (target
``rule:<selector>`` or ``rule:default``), whether or not any worker moved: who set the fleet
default, and when, can always be told. A refused change writes nothing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import (
    ChangeSet,
    ConcurrencyRuleChange,
    ConcurrencyRuleSet,
    ConcurrencyRuleView,
)
from edgefleet.db.models import ConcurrencyRule, Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, InvalidRequest, NotFound
from edgefleet.parsing import format_selector
from edgefleet.server.events import Outcome, changed_workers
from edgefleet.server.services import audit, layers

#: The name the fleet default goes by where a rule is named (its selector is empty).
DEFAULT_NAME = "default"
#: The audit log's target of a rule's own change is this and the rule's name.
AUDIT_TARGET_PREFIX = "rule:"


def selector_text(selector: dict[str, str]) -> str:
    """A selector's one spelling, keys sorted: ``zone=a,site=p1`` and ``site=p1,zone=a``
    are one rule."""
    return format_selector(dict(sorted(selector.items())))


def rule_selector(selector: dict[str, str] | None, default: bool) -> dict[str, str]:
    """The selector a request names: a non-empty one, or with ``default`` the empty one."""
    if default == (selector is not None):
        raise InvalidRequest("give exactly one of 'selector' (KEY=VALUE labels) or 'default'")
    if selector is not None and not selector:
        raise InvalidRequest(
            "empty selector: give at least one KEY=VALUE label (or 'default' for the fleet default)"
        )
    return dict(selector or {})


def view(rule: ConcurrencyRule) -> ConcurrencyRuleView:
    selector = dict(rule.selector)
    return ConcurrencyRuleView(
        rule=rule.selector_text or DEFAULT_NAME,
        selector=selector,
        source=fleet_rules.LABEL_RULE if selector else fleet_rules.FLEET_DEFAULT,
        concurrency=rule.concurrency,
        set_at=rule.set_at,
        set_by=rule.set_by,
    )


def list_rules(db: sessionmaker[Session]) -> list[ConcurrencyRuleView]:
    """The fleet default first, then label rules by name."""
    with db() as session:
        rules = session.scalars(select(ConcurrencyRule).order_by(ConcurrencyRule.selector_text))
        return [view(rule) for rule in rules]


def all_workers(session: Session) -> list[Worker]:
    """Every worker, locked in hostname order (as ``targets.resolve`` locks them)."""
    query = select(Worker).order_by(Worker.hostname).with_for_update()
    return list(session.scalars(query))


def check_cpus(workers: list[Worker], selector: dict[str, str], value: int, per_cpu: float):
    """Refuse ``value`` if it is beyond the CPU limit of a worker the rule matches now."""
    for worker in workers:
        if not fleet_rules.matches(worker.hostname, worker.labels, None, selector):
            continue
        refused = fleet_rules.cpu_refusal(worker.hostname, worker.sysinfo, value, per_cpu)
        if refused is not None:
            raise Conflict(refused)


def set_rule(
    db: sessionmaker[Session], request: ConcurrencyRuleSet, actor: str, per_cpu: float = 0.0
) -> Outcome[ConcurrencyRuleChange]:
    """Create or change a rule and apply it to every worker it now decides for."""
    selector = rule_selector(request.selector, request.default)
    name = selector_text(selector)
    with db.begin() as session:
        layers.take_rules_lock(session, shared=False)
        workers = all_workers(session)
        if not request.force:
            check_cpus(workers, selector, request.concurrency, per_cpu)
        rule = session.scalars(
            select(ConcurrencyRule).where(ConcurrencyRule.selector_text == name)
        ).one_or_none()
        if rule is None:
            rule = ConcurrencyRule(selector_text=name, selector=selector, set_by=actor)
            session.add(rule)
        old = rule.concurrency  # None for a new rule
        rule.concurrency, rule.set_at, rule.set_by = request.concurrency, utcnow(), actor
        session.flush()
        shown = view(rule)
        comment = f"{_named(shown)} set to {request.concurrency}" + (
            f" (was {old})" if old is not None else ""
        )
        if old != request.concurrency:
            _audit(session, actor, shown, old, request.concurrency, comment)
        changes = layers.refresh(session, workers, layers.load(session), actor, comment)
        return _outcome(shown, changes, removed=False)


def remove_rule(
    db: sessionmaker[Session], selector: dict[str, str] | None, default: bool, actor: str
) -> Outcome[ConcurrencyRuleChange]:
    """Remove a rule: the workers it decided for fall to the next layer down."""
    selector = rule_selector(selector, default)
    name = selector_text(selector)
    with db.begin() as session:
        layers.take_rules_lock(session, shared=False)
        workers = all_workers(session)
        rule = session.scalars(
            select(ConcurrencyRule).where(ConcurrencyRule.selector_text == name)
        ).one_or_none()
        if rule is None:
            what = "fleet default" if not selector else f"concurrency rule for {name}"
            raise NotFound(f"there is no {what}; `edgefleet concurrency-rule list` shows them")
        shown = view(rule)
        session.delete(rule)
        session.flush()
        comment = f"{_named(shown)} ({shown.concurrency}) removed"
        _audit(session, actor, shown, shown.concurrency, None, comment)
        changes = layers.refresh(session, workers, layers.load(session), actor, comment)
        return _outcome(shown, changes, removed=True)


def _audit(
    session: Session,
    actor: str,
    rule: ConcurrencyRuleView,
    old: int | None,
    new: int | None,
    comment: str,
) -> None:
    target = f"{AUDIT_TARGET_PREFIX}{rule.rule}"
    audit.record(session, [audit.entry(utcnow(), actor, target, "concurrency", old, new, comment)])


def _named(rule: ConcurrencyRuleView) -> str:
    if rule.source == fleet_rules.FLEET_DEFAULT:
        return "fleet default"
    return f"label rule {rule.rule}"


def _outcome(
    rule: ConcurrencyRuleView, changes: list, *, removed: bool
) -> Outcome[ConcurrencyRuleChange]:
    touched = sorted({change.hostname for change in changes})
    versions = {c.hostname: c.desired_version for c in changes}
    change_set = ChangeSet(workers=touched, changes=changes, versions=versions)
    answer = ConcurrencyRuleChange(rule=rule, removed=removed, changes=change_set)
    return Outcome(answer, changed_workers(change_set))
