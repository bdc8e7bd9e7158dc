"""A worker's own credential: enrolled once with a join token, kept in the home, rotated
before it expires.

The credential file (``$EDGEFLEET_HOME/workers/<hostname>/credential``, mode 0600) is the
worker's whole identity: once it exists, the worker uses only it, across restarts, and needs
neither the join token nor the shared secret again. It is replaced atomically (temp file,
fsync, rename), so a crash never leaves half a credential behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefleet.backoff import Backoff
from edgefleet.client_auth import BearerAuth
from edgefleet.errors import Conflict, Refused, TlsFailure, Unavailable
from edgefleet.private_files import ensure_private_dir, replace_private
from edgefleet.worker.client import EdgeClient, retry_after

log = logging.getLogger(__name__)

#: Longest sleep between two looks at the credential's age: a clock jump or a suspended
#: machine is noticed within this many seconds.
CHECK_INTERVAL_SECONDS = 300.0
#: First wait before a failed rotation is tried again (it doubles up to the check interval).
RETRY_SECONDS = 30.0


class EnrollmentError(RuntimeError):
    """The worker has no usable identity; the message says what to do."""


class CredentialRevoked(EnrollmentError):
    """The server refused the stored credential and no join token can replace it."""


@dataclass(frozen=True)
class Credential:
    token: str
    expires_at: datetime
    #: When this worker received it (its local clock): half-way to expiry it is renewed.
    issued_at: datetime

    @property
    def renew_at(self) -> datetime:
        return self.issued_at + (self.expires_at - self.issued_at) / 2

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> Credential:
        """From the server's ``{hostname, credential, expires_at}``."""
        return cls(
            token=answer["credential"],
            expires_at=_timestamp(answer["expires_at"]),
            issued_at=datetime.now(UTC),
        )


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def credential_path(home: Path, hostname: str) -> Path:
    if not hostname or "/" in hostname or "\0" in hostname or hostname in (".", ".."):
        raise EnrollmentError(f"hostname {hostname!r} cannot name a credential file")
    return home / "workers" / hostname / "credential"


def load_credential(path: Path) -> Credential | None:
    """The stored credential, or None if there is none yet."""
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnrollmentError(f"cannot read the credential {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
        token = data["credential"]
        expires_at = _timestamp(data["expires_at"])
        issued = data.get("issued_at")
        issued_at = _timestamp(issued) if issued else datetime.fromtimestamp(mtime, UTC)
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrollmentError(
            f"the credential {path} is damaged ({exc!r}): delete it and start again with "
            "a new --join-token from `edgefleet token create-join`"
        ) from exc
    if not isinstance(token, str) or not token:
        raise EnrollmentError(f"the credential {path} holds no credential: delete it")
    return Credential(token=token, expires_at=expires_at, issued_at=issued_at)


def save_credential(path: Path, credential: Credential) -> None:
    """Write atomically with mode 0600: a reader sees the old file or the whole new one."""
    body = json.dumps(
        {
            "credential": credential.token,
            "expires_at": credential.expires_at.isoformat(),
            "issued_at": credential.issued_at.isoformat(),
        }
    )
    ensure_private_dir(path.parent)
    replace_private(path, body.encode())


def _refusal(exc: Refused, hostname: str) -> str:
    if isinstance(exc, Conflict):
        return (
            f"hostname {hostname!r} is already enrolled with a live credential "
            f"(server: {exc.detail}); revoke it with `edgefleet revoke-remote-edge-worker "
            f"-H {hostname}` or start this worker under another name"
        )
    return f"join token refused (HTTP {exc.status_code}): {exc.detail}"


class CredentialKeeper:
    """Holds the worker's credential: finds or enrolls it at start, puts it on the client's
    ``auth``, renews it half-way through its life, and re-enrolls when it is refused (only
    with a join token given)."""

    def __init__(
        self,
        client: EdgeClient,
        auth: BearerAuth,
        path: Path,
        join_token: str | None,
        *,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        retry_interval: float = RETRY_SECONDS,
    ) -> None:
        self.client = client
        self.auth = auth
        self.path = path
        self._join_token = join_token
        self._check_interval = check_interval
        self._retry = Backoff(
            base=retry_interval,
            cap=max(retry_interval, check_interval),
            floor=retry_interval / 2,
        )
        self.credential: Credential | None = None

    async def start(self) -> None:
        """Use the stored credential, or enroll for one with the join token."""
        stored = load_credential(self.path)
        if stored is None:
            if not self._join_token:
                raise EnrollmentError(
                    f"no credential at {self.path} and no join token: create one on the server "
                    "with `edgefleet token create-join` and start with --join-token"
                )
            await self._enroll()
            return
        if self._join_token:
            log.info(
                "worker %s: using the credential in %s; the join token given is ignored "
                "unless the server refuses that credential",
                self.client.hostname,
                self.path,
            )
        self._use(stored)

    async def reauthenticate(self) -> None:
        """The server refused the credential (401): enroll again if a join token was given,
        else raise ``CredentialRevoked``. A join token is used for this at most once."""
        if not self._join_token:
            raise CredentialRevoked(self.refused_message())
        log.warning(
            "worker %s: the server refused the stored credential; enrolling again",
            self.client.hostname,
        )
        await self._enroll()

    def refused_message(self) -> str:
        return (
            f"the credential in {self.path} was revoked or expired: start again with a new "
            "--join-token from `edgefleet token create-join`"
        )

    async def _enroll(self) -> None:
        token, self._join_token = self._join_token, None
        assert token is not None
        backoff = Backoff(base=0.5, cap=30.0)
        while True:
            try:
                answer = await self.client.enroll(token)
                break
            except TlsFailure:
                raise  # at start-up: a configuration problem, not an outage
            except Unavailable as exc:
                delay = max(backoff.next(), retry_after(exc))
                log.warning(
                    "worker %s: cannot enroll yet (%s); retrying in %.1fs",
                    self.client.hostname,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except Refused as exc:
                raise EnrollmentError(_refusal(exc, self.client.hostname)) from exc
        credential = Credential.from_answer(answer)
        save_credential(self.path, credential)
        self._use(credential)
        log.info(
            "worker %s: enrolled; credential kept in %s (valid until %s)",
            self.client.hostname,
            self.path,
            credential.expires_at.isoformat(timespec="seconds"),
        )

    def _use(self, credential: Credential) -> None:
        self.credential = credential
        self.auth.token = credential.token

    # --- rotation -------------------------------------------------------------------------

    def seconds_until_due(self) -> float:
        """Seconds until the credential should be renewed (0 or less: now)."""
        if self.credential is None:
            return self._check_interval
        return self.credential.renew_at.timestamp() - time.time()

    async def keep_fresh(self) -> None:
        """Renew the credential whenever half its life has passed; runs until cancelled.
        A failed renewal is tried again later and never stops the worker."""
        while True:
            due = self.seconds_until_due()
            if due > 0:
                await asyncio.sleep(min(due, self._check_interval))
                continue
            try:
                rotated = await self.rotate()
            except Exception:  # whatever went wrong, the next try may work
                log.exception("worker %s: credential renewal failed", self.client.hostname)
                rotated = False
            if rotated:
                self._retry.reset()
            else:
                await asyncio.sleep(self._retry.next())

    async def rotate(self) -> bool:
        """Ask for a fresh credential, store it, then send it; True if that worked."""
        try:
            answer = await self.client.renew_credential()
        except (Unavailable, Refused) as exc:
            log.warning("worker %s: cannot renew its credential: %s", self.client.hostname, exc)
            return False
        try:
            credential = Credential.from_answer(answer)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("worker %s: bad credential renewal answer: %r", self.client.hostname, exc)
            return False
        try:
            save_credential(self.path, credential)
        except OSError as exc:  # still send it: the old one dies soon on the server
            log.error(
                "worker %s: renewed credential not saved to %s (%s); a restart will need a new "
                "join token",
                self.client.hostname,
                self.path,
                exc,
            )
        self._use(credential)
        log.info(
            "worker %s: credential renewed (valid until %s)",
            self.client.hostname,
            credential.expires_at.isoformat(timespec="seconds"),
        )
        return True
