"""Tokens the server issues: operator tokens, join tokens and workers' own credentials.

Only a SHA-256 of each token is stored; the token itself is returned once, when issued. A
worker enrolls with a join token (limited in time and uses) and gets a credential bound to
its hostname; it rotates that credential itself before it expires, and an operator can revoke
it (``revoke_workers``), which also loses the jobs it was running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.auth import (
    JOIN_TOKEN_PREFIX,
    OPERATOR_TOKEN_PREFIX,
    WORKER_CREDENTIAL_PREFIX,
    WORKER_ROLE,
    Identity,
    new_opaque_token,
    token_hash,
)
from edgefleet.contract import (
    ChangeSet,
    JoinTokenRequest,
    Target,
    TokenRequest,
    TokenView,
    WorkerChange,
    WorkerState,
)
from edgefleet.db.models import Credential, JoinToken, Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, NotFound, Unauthorized
from edgefleet.server.events import JobsQueued, Outcome, changed_workers
from edgefleet.server.services import audit, layers, lifecycle, targets

log = logging.getLogger(__name__)

OPERATOR = "operator"
WORKER = "worker"
#: How long a worker's previous credential still works after it rotated: requests already on
#: their way, and a worker that crashed before it stored the new one, are not cut off.
ROTATION_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A token just issued: the token itself (shown once) and when it expires."""

    token: str
    name: str
    role: str
    expires_at: datetime


@dataclass(frozen=True)
class Known:
    """What a stored credential says about its holder."""

    identity: Identity
    expires_at: datetime


def look_up(db: sessionmaker[Session], tokens: list[str]) -> list[Known | None]:
    """What each of ``tokens`` is: a live operator token or worker credential, or None. One
    query for them all: a fleet's remembered credentials come due together."""
    now = utcnow()
    hashes = [token_hash(token) for token in tokens]
    with db() as session:
        rows = {
            row.token_hash: row
            for row in session.scalars(select(Credential).where(Credential.token_hash.in_(hashes)))
        }
    found: list[Known | None] = []
    for digest in hashes:
        row = rows.get(digest)
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            found.append(None)
            continue
        source = "credential" if row.kind == WORKER else "token"
        identity = Identity(subject=row.name, role=row.role, source=source)
        found.append(Known(identity, row.expires_at))
    return found


# --- operator tokens --------------------------------------------------------------------------


def issue_operator_token(db: sessionmaker[Session], request: TokenRequest, actor: str) -> Issued:
    """A new operator token; a name that a live token already has is refused (409)."""
    now = utcnow()
    token, stored = _minted(OPERATOR_TOKEN_PREFIX, now, request.ttl_seconds)
    with db.begin() as session:
        if _live(session, OPERATOR, request.name, now):
            raise Conflict(
                f"a token named {request.name!r} exists already; revoke it first or pick "
                "another name"
            )
        session.add(
            Credential(
                **stored, kind=OPERATOR, name=request.name, role=request.role, created_by=actor
            )
        )
        row = audit.entry(now, actor, f"token:{request.name}", "token", None, request.role)
        audit.record(session, [row])
    return Issued(token, request.name, request.role, stored["expires_at"])


def _minted(prefix: str, now: datetime, ttl: float) -> tuple[str, dict[str, Any]]:
    """A new secret and what every stored token keeps of it: its hash, when it was made
    and when it expires (``ttl`` seconds on)."""
    token = new_opaque_token(prefix)
    expires = now + timedelta(seconds=ttl)
    return token, {"token_hash": token_hash(token), "created_at": now, "expires_at": expires}


def list_tokens(db: sessionmaker[Session]) -> list[TokenView]:
    """Operator tokens, newest first, without their secrets."""
    with db() as session:
        rows = session.scalars(
            select(Credential).where(Credential.kind == OPERATOR).order_by(Credential.id.desc())
        ).all()
        return [
            TokenView(
                name=row.name,
                role=row.role,
                created_at=row.created_at,
                created_by=row.created_by,
                expires_at=row.expires_at,
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]


def revoke_operator_token(db: sessionmaker[Session], name: str, actor: str) -> None:
    now = utcnow()
    with db.begin() as session:
        live = _live(session, OPERATOR, name, now)
        if not live:
            raise NotFound(f"no live token named {name!r}")
        for row in live:
            row.revoked_at = now
        row = audit.entry(now, actor, f"token:{name}", "token", live[0].role, "revoked")
        audit.record(session, [row])


def _is_live(kind: str, name: str, now: datetime):
    """The credentials of ``name`` that still work: not revoked, not expired."""
    return and_(
        Credential.kind == kind,
        Credential.name == name,
        Credential.revoked_at.is_(None),
        Credential.expires_at > now,
    )


def _live(session: Session, kind: str, name: str, now: datetime) -> list[Credential]:
    return list(
        session.scalars(select(Credential).where(_is_live(kind, name, now)).with_for_update())
    )


# --- enrollment -------------------------------------------------------------------------------


def create_join_token(db: sessionmaker[Session], request: JoinTokenRequest, actor: str) -> Issued:
    now = utcnow()
    token, stored = _minted(JOIN_TOKEN_PREFIX, now, request.ttl_seconds)
    with db.begin() as session:
        labels = dict(request.labels)
        session.add(JoinToken(**stored, created_by=actor, uses_left=request.uses, labels=labels))
        comment = f"uses {request.uses}, labels {request.labels or {}}"
        row = audit.entry(now, actor, "join-token", "join_token", None, "created", comment)
        audit.record(session, [row])
    return Issued(token, "join", WORKER_ROLE, stored["expires_at"])


def enroll(db: sessionmaker[Session], join_token: str, hostname: str, ttl: float) -> Issued:
    """Spend one use of ``join_token`` on a credential for ``hostname``.

    Refused (401) for an unknown, expired or used-up join token, and (409) for a hostname
    that holds a live credential already: a join token never takes over an enrolled worker.
    """
    now = utcnow()
    with db.begin() as session:
        join = session.scalars(
            select(JoinToken)
            .where(JoinToken.token_hash == token_hash(join_token))
            .with_for_update()
        ).one_or_none()
        if join is None:
            raise Unauthorized("unknown join token: create one with `edgefleet token create-join`")
        if join.expires_at <= now:
            raise Unauthorized(
                f"this join token expired at {join.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
                "create a new one with `edgefleet token create-join`"
            )
        if join.uses_left <= 0:
            raise Unauthorized(
                "this join token is used up: create a new one with `edgefleet token create-join`"
            )
        if _live(session, WORKER, hostname, now):
            raise Conflict(
                f"worker {hostname!r} is enrolled already; revoke it first "
                f"(`edgefleet revoke-remote-edge-worker -H {hostname}`) or pick another name"
            )
        join.uses_left -= 1
        worker = session.get(Worker, hostname, with_for_update=True)
        if worker is not None:
            worker.revoked_at = None
            worker.labels = {**(worker.labels or {}), **join.labels}
            layers.take_rules_lock(session, shared=True)
            layers.refresh(session, [worker], layers.load(session), "server")
        issued = _issue_credential(session, hostname, dict(join.labels), now, ttl)
        row = audit.entry(now, f"join-token:{join.id}", hostname, "enrolled", None, "credential")
        audit.record(session, [row])
    log.info("worker %s enrolled with join token %d", hostname, join.id)
    return issued


def rotate(db: sessionmaker[Session], hostname: str, current: str, ttl: float) -> Issued:
    """A fresh credential for ``hostname``; the one it rotated from dies after a grace."""
    now = utcnow()
    with db.begin() as session:
        old = session.scalars(
            select(Credential).where(Credential.token_hash == token_hash(current)).with_for_update()
        ).one_or_none()
        if old is None or old.kind != WORKER or old.name != hostname:
            raise Unauthorized("only a worker's own credential can be rotated")
        if old.revoked_at is not None or old.expires_at <= now:
            raise Unauthorized("this credential was revoked or has expired")
        old.expires_at = min(old.expires_at, now + ROTATION_GRACE)
        return _issue_credential(session, hostname, dict(old.labels), now, ttl)


def _issue_credential(
    session: Session, hostname: str, labels: dict[str, Any], now: datetime, ttl: float
) -> Issued:
    token, stored = _minted(WORKER_CREDENTIAL_PREFIX, now, ttl)
    session.add(
        Credential(
            **stored,
            kind=WORKER,
            name=hostname,
            role=WORKER_ROLE,
            labels=labels,
            created_by="enrollment",
        )
    )
    return Issued(token, hostname, WORKER_ROLE, stored["expires_at"])


def enrolled_labels(session: Session, hostname: str) -> dict[str, Any]:
    """The labels a worker's live credential pins (from its join token), or none."""
    now = utcnow()
    labels = session.scalars(
        select(Credential.labels)
        .where(_is_live(WORKER, hostname, now))
        .order_by(Credential.id.desc())
        .limit(1)
    ).first()
    return dict(labels or {})


# --- revocation -------------------------------------------------------------------------------


def revoke_workers(db: sessionmaker[Session], target: Target, actor: str) -> Outcome[ChangeSet]:
    """Revoke the targeted workers: their credentials die at once, their calls are refused
    until they enroll again, and their running jobs are lost as an offline worker's are
    (their queues are woken, and the revoked workers' long-polls)."""
    now = utcnow()
    requeued: list[JobsQueued] = []
    changes: list[WorkerChange] = []
    rows: list[dict[str, Any]] = []
    with db.begin() as session:
        workers = targets.resolve(session, target)
        names = [worker.hostname for worker in workers]
        session.execute(
            update(Credential)
            .where(
                Credential.kind == WORKER,
                Credential.name.in_(names),
                Credential.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        for worker in workers:
            if worker.revoked_at is not None:
                continue
            worker.revoked_at = now
            # Its process is cut off: a new enrollment starts afresh, not as a duplicate.
            worker.instance_id = None
            worker.reported_state = WorkerState.STOPPED
            why = f"worker {worker.hostname} was revoked by {actor}"
            requeued += lifecycle.lose_running_jobs(session, worker.hostname, why, now)
            rows.append(audit.entry(now, actor, worker.hostname, "revoked", None, True))
            changes.append(
                WorkerChange(
                    hostname=worker.hostname,
                    field="revoked",
                    old=False,
                    new=True,
                    desired_version=worker.desired_version,
                )
            )
        audit.record(session, rows)
        versions = {worker.hostname: worker.desired_version for worker in workers}
    for change in changes:
        log.warning("worker %s: revoked by %s", change.hostname, actor)
    changeset = ChangeSet(workers=names, changes=changes, versions=versions)
    return Outcome(changeset, (*dict.fromkeys(requeued), *changed_workers(changeset)))
