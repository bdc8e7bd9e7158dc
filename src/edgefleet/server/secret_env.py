"""Secret job env values, sealed at rest: encrypted with a key derived from the server's
signing secret, so a copy of the database (a dump, a backup) does not give them away.

Each value is a Fernet token of its own (AES-128-CBC with an HMAC-SHA256, from the
``cryptography`` package); the names stay readable, as listings show them. The key is derived
with HKDF from the signing secret, so every replica that verifies tokens can also open what
another sealed. If the signing secret changes, values sealed under the old one can no longer
be opened: a job still queued with such values fails when a worker would claim it, with a
reason that says to submit it again (a job already running has its values).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: Binds the derived key to this one use of the signing secret (tokens use it as is).
_PURPOSE = b"edgefleet job secret env v1"

UNREADABLE = (
    "its secret env values cannot be decrypted: the server's signing secret changed after "
    "the job was submitted; submit it again"
)


class SecretEnvUnreadable(Exception):
    """Sealed values that this key cannot open (sealed under another signing secret)."""


class EnvSealer:
    """Seals secret env values for the database and opens them for the claiming worker."""

    def __init__(self, signing_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
            signing_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, values: Mapping[str, str]) -> dict[str, str]:
        fernet = self._fernet
        return {name: fernet.encrypt(value.encode()).decode() for name, value in values.items()}

    def open(self, sealed: Mapping[str, str]) -> dict[str, str]:
        try:
            return {name: self._fernet.decrypt(token).decode() for name, token in sealed.items()}
        except (InvalidToken, TypeError, ValueError) as exc:
            raise SecretEnvUnreadable(UNREADABLE) from exc
