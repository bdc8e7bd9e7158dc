"""Files only their owner may read: the signing secret, the SQLite database, credentials.

Each is created with mode 0600 from the start (never created wider and narrowed later, which
leaves a moment when anyone can open it), in a folder edgefleet creates with mode 0700.
Whole files are published atomically: written to a temporary file in the same folder and
synced, then linked or renamed into place, so a reader sees either no file or all of it.
The few files others must read (a service unit) are replaced the same way, by ``replace_file``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 if it is missing (its parents as usual). A folder that
    already exists is left as its owner set it."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it first
        path.mkdir(mode=DIR_MODE)


def create_private(path: Path) -> bool:
    """Create an empty ``path`` with mode 0600 unless it exists; True if this call made it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def publish_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if no file is there; False if one already was (another
    process won the race, and its file stands). Readers never see a partial file."""
    temporary = _written_temporary(path, data, FILE_MODE)
    try:
        try:
            os.link(temporary, path)  # fails if ``path`` exists: the first writer wins
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: rename, after a last look
            if path.exists():
                return False
            os.rename(temporary, path)
        _sync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def replace_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600), replacing any file there in one step."""
    replace_file(path, data, FILE_MODE)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` (whatever the umask), replacing any file
    there in one step."""
    temporary = _written_temporary(path, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    _sync_dir(path.parent)


def _written_temporary(path: Path, data: bytes, mode: int) -> Path:
    """A new file beside ``path`` holding ``data``, synced to disk: created with mode 0600
    (or less, by the umask) and only then given ``mode``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode != FILE_MODE:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def _sync_dir(path: Path) -> None:
    """Make a new name in ``path`` survive a crash (best effort: not every system can)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
